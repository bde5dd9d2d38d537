// Command pubsub serves Google's in-memory Pub/Sub server (pstest) over gRPC
// for local development and tests; clients reach it through
// PUBSUB_EMULATOR_HOST.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"cloud.google.com/go/pubsub/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/pstest"
	"google.golang.org/grpc"
)

// holdEmptyPull answers a Pull as soon as a message is there, and an empty
// one after at most `hold`. pstest alone holds an empty Pull for 500 ms,
// and Beam's DirectRunner pulls every subscription in turn on one
// worker thread, so each idle subscription stalled the whole pipeline
// (bench/freshness.py); answering at once instead made an idle pipeline
// spin a core on empty pulls. A short hold, polled, is neither.
func holdEmptyPull(hold time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		pull, ok := req.(*pubsubpb.PullRequest)
		if !ok || pull.ReturnImmediately {
			return handler(ctx, req)
		}
		pull.ReturnImmediately = true
		deadline := time.Now().Add(hold)
		for {
			resp, err := handler(ctx, pull)
			if err != nil || len(resp.(*pubsubpb.PullResponse).ReceivedMessages) > 0 || time.Now().After(deadline) {
				return resp, err
			}
			select {
			case <-ctx.Done():
				return resp, nil
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8085", "host:port to listen on")
	hold := flag.Duration("empty_pull_hold", 20*time.Millisecond,
		"longest time an empty Pull waits for a message (pstest alone: 500ms)")
	flag.Parse()

	// pstest's own listener stays private; clients reach its state through ours.
	fake := pstest.NewServerWithAddress("127.0.0.1:0")
	defer fake.Close()
	srv := grpc.NewServer(grpc.UnaryInterceptor(holdEmptyPull(*hold)))
	pubsubpb.RegisterPublisherServer(srv, &fake.GServer)
	pubsubpb.RegisterSubscriberServer(srv, &fake.GServer)
	pubsubpb.RegisterSchemaServiceServer(srv, &fake.GServer)
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := srv.Serve(lis); err != nil {
			log.Fatal(err)
		}
	}()
	log.Printf("Pub/Sub (pstest) listening on %s", lis.Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	srv.Stop()
}
