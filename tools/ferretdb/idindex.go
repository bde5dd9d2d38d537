package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB itself uses
)

// indexIDPushdown keeps an index on `_ferretdb_sjson->'$._id'` on every
// collection table of the SQLite data directory, until ctx ends.
//
// FerretDB 1.24's SQLite backend finds a document by that expression
// (metadata.IDColumn) for a filter that is exactly {_id: string or ObjectID},
// and for every UPDATE and DELETE of a document, but creates its unique _id
// index on `_ferretdb_sjson->"_id"`. SQLite matches an expression index by
// the expression's text, so all those look-ups scanned the whole table.
// An index on the exact expression turns them into index searches; clients
// do not see it (listIndexes reads FerretDB's metadata, not SQLite's).
// FerretDB creates tables as collections appear, hence the polling.
func indexIDPushdown(ctx context.Context, dir string, every time.Duration, logger *slog.Logger) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
		for _, file := range files {
			if err := indexFile(ctx, file); err != nil {
				logger.Debug("id pushdown index: will retry", "file", file, "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// indexFile opens the database afresh each time: FerretDB deletes and
// re-creates a file when a database is dropped and used again.
func indexFile(ctx context.Context, file string) error {
	db, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT c.table_name FROM _ferretdb_collections c
		WHERE NOT EXISTS (SELECT 1 FROM sqlite_master m WHERE m.type = 'index' AND m.name = c.table_name || '__id_pushdown')`)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var table string
		if err := rows.Scan(&table); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, table)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	for _, table := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (_ferretdb_sjson->'$._id')`,
			quote(table+"__id_pushdown"), quote(table))
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

func quote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
