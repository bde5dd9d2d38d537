"""Packages singleview for Dataflow and Flink workers (`--setup_file ./setup.py`)."""
import setuptools

REQUIRES = [
    "apache-beam[gcp]==2.77.0",
    "pymongo==4.20.1",
    "fastavro==1.13.1",
    "google-cloud-pubsub==2.44.0",
]
SERVING = ["fastapi==0.165.0", "uvicorn==0.54.0", "prometheus-client==0.26.0"]
TEST = ["pytest==9.2.0", "hypothesis==6.170.17", "httpx==0.28.1", "playwright==1.65.2", "schemathesis==4.32.5"]

setuptools.setup(
    name="singleview",
    version="0.1.0",
    description="Real-time customer single view: Beam CDC pipeline, MongoDB, FastAPI",
    packages=setuptools.find_packages(include=["singleview", "singleview.*"]),
    py_modules=["run_pipeline"],
    package_data={"singleview.serving": ["static/*"]},
    python_requires=">=3.11",
    install_requires=REQUIRES,
    extras_require={"serving": SERVING, "test": SERVING + TEST},
)
