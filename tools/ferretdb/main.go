// Command ferretdb runs FerretDB v1.24 on its SQLite backend for local
// development and tests. It embeds the upstream package rather than using
// `go install .../cmd/ferretdb`, whose module download lacks
// build/version/version.txt and panics at start-up.
//
// It also adds one index per collection so that a look-up by _id is not a
// full table scan; see ensureIDPushdownIndexes.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // -pprof-addr: where FerretDB's time goes
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	_ "modernc.org/sqlite" // the driver FerretDB itself uses: same in-process SQLite locks
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("sqlite-url", "file:.data/ferretdb/", "SQLite backend URL (a directory)")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	idIndex := flag.Bool("id-pushdown-index", true, "add the index that lets SQLite use FerretDB's _id pushdown")
	pprofAddr := flag.String("pprof-addr", "", "serve Go's profiler (net/http/pprof) on this address, e.g. 127.0.0.1:6060")
	flag.Parse()

	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}

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
		dir, err := sqliteDir(*dataDir)
		if err != nil {
			log.Fatal(err)
		}
		// One pass before listening, so existing large collections are indexed
		// before clients write; afterwards new collections are indexed while small.
		ensureIDPushdownIndexes(ctx, dir, logger)
		go func() {
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					ensureIDPushdownIndexes(ctx, dir, logger)
				}
			}
		}()
	}

	logger.Warn("FerretDB listening", "addr", *listen, "sqlite", *dataDir, "id-pushdown-index", *idIndex)
	if err := f.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// sqliteDir returns the directory of a file: SQLite URL such as
// "file:.data/ferretdb/" or "file:/abs/dir/?_pragma=...".
func sqliteDir(sqliteURL string) (string, error) {
	u, err := url.Parse(sqliteURL)
	if err != nil {
		return "", err
	}
	if u.Query().Get("mode") == "memory" {
		return "", errors.New("-id-pushdown-index needs an on-disk -sqlite-url; use -id-pushdown-index=false")
	}
	if u.Opaque != "" {
		return u.Opaque, nil
	}
	return u.Path, nil
}

// ensureIDPushdownIndexes creates, in every <db>.sqlite file of dir, the index
// "<table>__id_pushdown" ON "<table>" (_ferretdb_sjson->'$._id') for each
// collection table that lacks it.
//
// Why: for a filter {_id: <string or ObjectID>}, FerretDB 1.24's SQLite
// backend pushes down WHERE _ferretdb_sjson->'$._id' = ? (metadata.IDColumn),
// but its own unique _id index is on _ferretdb_sjson->"_id". SQLite matches
// expression indexes by their syntax tree, so that index is never used and
// every _id look-up scans the collection. An index on exactly the pushed-down
// expression makes it a SEARCH. FerretDB does not know this index: listIndexes
// does not show it and dropping the collection drops it with the table.
//
// Each file is opened only for the moment of the check, read-write but never
// created (mode=rw: a database dropped meanwhile stays dropped). Any error (a
// table or file dropped meanwhile, SQLITE_BUSY) means "try again next tick".
// A database dropped while its file is open here leaves its -wal and -shm
// files behind (see removeOrphanWAL). Accepted for a development server: one
// re-created under the same name before the next tick could read them.
func ensureIDPushdownIndexes(ctx context.Context, dir string, logger *slog.Logger) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
	for _, file := range files {
		if err := ensureIDPushdownIndexesIn(ctx, file, logger); err != nil {
			logger.Debug("id pushdown index: retry next tick", "file", file, "err", err)
		}
	}
	removeOrphanWAL(dir, logger)
}

// removeOrphanWAL deletes <db>.sqlite-wal and -shm files whose <db>.sqlite is
// gone. FerretDB drops a database by closing it (SQLite removes the WAL on the
// last close) and then removing <db>.sqlite; if our connection was open at that
// moment, FerretDB's close was not the last, and ours can no longer checkpoint
// the removed file, so the WAL stays, and a database later created under that
// name would replay the dropped one's pages.
func removeOrphanWAL(dir string, logger *slog.Logger) {
	for _, suffix := range []string{"-wal", "-shm"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"+suffix))
		for _, f := range files {
			if _, err := os.Stat(strings.TrimSuffix(f, suffix)); !errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err := os.Remove(f); err == nil {
				logger.Info("removed the WAL file of a dropped database", "file", f)
			}
		}
	}
}

func ensureIDPushdownIndexesIn(ctx context.Context, file string, logger *slog.Logger) error {
	dsn := (&url.URL{Scheme: "file", Opaque: file,
		RawQuery: "mode=rw&_pragma=busy_timeout(1000)"}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	rows, err := db.QueryContext(ctx, `
		SELECT c.table_name FROM _ferretdb_collections c
		WHERE EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = c.table_name)
		AND NOT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = c.table_name || '__id_pushdown')`)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	if err := rows.Close(); err != nil {
		return err
	}

	for _, t := range tables {
		q := "CREATE INDEX IF NOT EXISTS " + quoteIdent(t+"__id_pushdown") +
			" ON " + quoteIdent(t) + " (_ferretdb_sjson->'$._id')"
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
		logger.Info("id pushdown index created", "file", file, "table", t)
	}
	return nil
}

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
