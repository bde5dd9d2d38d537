// Command ferretdb runs FerretDB v1.24 on its SQLite backend for local
// development and tests. It embeds the upstream package rather than using
// `go install .../cmd/ferretdb`, whose module download lacks
// build/version/version.txt and panics at start-up.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("sqlite-url", "file:.data/ferretdb/", "SQLite backend URL (a directory)")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		log.Fatalf("bad -log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: *dataDir,
		Logger:    logger,
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger.Warn("FerretDB listening", "addr", *listen, "sqlite", *dataDir)
	if err := f.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
