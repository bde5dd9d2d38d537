// Command ferretdb runs FerretDB v1.24 on its SQLite backend for local
// development and tests. It embeds the upstream package rather than using
// `go install .../cmd/ferretdb`, whose module download lacks
// build/version/version.txt and panics at start-up, and adds the index that
// lets FerretDB find a document by _id without a scan (idindex.go).
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("sqlite-url", "file:.data/ferretdb/", "SQLite backend URL (a directory)")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	idIndex := flag.Bool("id-pushdown-index", true, "index the expression FerretDB looks documents up by _id with")
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

	if *idIndex {
		dir, _, _ := strings.Cut(strings.TrimPrefix(*dataDir, "file:"), "?")
		go indexIDPushdown(ctx, dir, 250*time.Millisecond, logger)
	}

	logger.Warn("FerretDB listening", "addr", *listen, "sqlite", *dataDir)
	if err := f.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
