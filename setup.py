"""Packages singleview for Dataflow and Flink workers (`--setup_file ./setup.py`).

Workers install the sdist with `install_requires` only: what the pipeline
imports. The FastAPI service is the `serving` extra, so workers never get it.
The pins match requirements*.txt (tests/test_packaging.py checks).
"""
import setuptools

PIPELINE = [
    "apache-beam[gcp]==2.77.0",
    "pymongo==4.20.1",
    "fastavro==1.13.1",
    "typing-extensions==4.16.0",
    "google-cloud-pubsub==2.44.0",
    "orjson==3.13.0",
]
KAFKA = ["confluent-kafka==2.16.1"]
# confluent-kafka: POST /webhooks/hubspot publishes to a Kafka topic when configured so.
SERVING = ["fastapi==0.165.0", "uvicorn==0.54.0", "prometheus-client==0.26.0"] + KAFKA
TEST = ["pytest==9.2.0", "hypothesis==6.170.17", "httpx==0.28.1", "playwright==1.65.2",
        "schemathesis==4.32.5", "py-spy==0.4.3"]

setuptools.setup(
    name="singleview",
    version="0.1.0",
    description="Real-time customer single view: Beam CDC pipeline, MongoDB, FastAPI",
    packages=setuptools.find_packages(include=["singleview", "singleview.*"]),
    package_data={"singleview.serving": ["static/*"]},
    python_requires=">=3.11",
    install_requires=PIPELINE,
    extras_require={"serving": SERVING, "kafka": KAFKA, "test": SERVING + TEST},
    entry_points={"console_scripts": ["singleview-pipeline = singleview.pipelines.single_view:main"]},
)
