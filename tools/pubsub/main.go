// Command pubsub serves Google's in-memory Pub/Sub server (pstest) over gRPC
// for local development and tests; clients reach it through
// PUBSUB_EMULATOR_HOST.
package main

import (
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"cloud.google.com/go/pubsub/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/pstest"
)

// pullReturnsAtOnce makes an empty unary Pull return at once. pstest
// otherwise holds it for 500 ms, and Beam's DirectRunner pulls every
// subscription in turn on its single worker thread, so each empty pull
// stalled the whole pipeline (measured with bench/freshness.py).
type pullReturnsAtOnce struct{}

func (pullReturnsAtOnce) React(req any) (bool, any, error) {
	if pull, ok := req.(*pubsubpb.PullRequest); ok {
		pull.ReturnImmediately = true
	}
	return false, nil, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8085", "host:port to listen on")
	wait := flag.Bool("pull_wait", false, "hold an empty Pull for 500 ms, as pstest does by default")
	flag.Parse()

	var opts []pstest.ServerReactorOption
	if !*wait {
		opts = append(opts, pstest.ServerReactorOption{FuncName: "Pull", Reactor: pullReturnsAtOnce{}})
	}
	srv := pstest.NewServerWithAddress(*addr, opts...)
	defer srv.Close()
	log.Printf("Pub/Sub (pstest) listening on %s", srv.Addr)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
}
