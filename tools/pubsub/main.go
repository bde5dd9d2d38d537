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

	"cloud.google.com/go/pubsub/pstest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8085", "host:port to listen on")
	flag.Parse()

	srv := pstest.NewServerWithAddress(*addr)
	defer srv.Close()
	log.Printf("Pub/Sub (pstest) listening on %s", srv.Addr)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
}
