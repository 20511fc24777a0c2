package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/lonelypsd/lonelypsd/fsm"
)

const (
	// DefaultMaxRestoreSize bounds an uploaded backup: 1.2 million rows
	// take about 100 MB.
	DefaultMaxRestoreSize = 4 << 30
	// restoreChunkBytes bounds the rows of one restore entry (encoded,
	// roughly), far below maxEntrySize: every replica holds an entry in
	// memory while it applies it.
	restoreChunkBytes = 2 << 20
	// restoreTimeout bounds a restore once its file is checked; it goes
	// on if the operator's connection drops, so it ends committed or
	// staged, never half-swapped.
	restoreTimeout = 30 * time.Minute
)

// serveBackup streams the table as a backup file (fsm.WriteBackup). A
// failure midway leaves the file without its digest, which every reader
// refuses.
func (n *Node) serveBackup(w http.ResponseWriter, r *http.Request, _ []byte) {
	n.barrierForAdmin(r.Context())
	w.Header().Set("Content-Type", "application/octet-stream")
	info, err := n.fsm.WriteBackup(w)
	if err != nil {
		n.log.Warn("backup cut short", "err", err)
		return
	}
	n.log.Info("backup written", "applied_index", info.Applied, "exact", info.Exact, "globs", info.Globs)
}

// serveRestore takes a backup file, checks it whole, and replaces the
// table with it through Raft.
func (n *Node) serveRestore(w http.ResponseWriter, r *http.Request) {
	limit := n.cfg.MaxRestoreSize
	if limit <= 0 {
		limit = DefaultMaxRestoreSize
	}
	stamp, ok := n.checkPeer(w, r, limit)
	if !ok {
		return
	}
	f, err := n.spoolSigned(r.Body, stamp)
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) {
			w.Header().Set("Connection", "close")
			writeError(w, se.Code, se.Body)
			return
		}
		writeErr(w, err)
		return
	}
	defer func() { _ = f.Close(); _ = os.Remove(f.Name()) }()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), restoreTimeout)
	defer cancel()
	info, err := n.Restore(ctx, f)
	switch {
	case errors.Is(err, fsm.ErrBadBackup):
		writeError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		writeErr(w, err)
	default:
		writeJSON(w, http.StatusOK, map[string]int{"exact": info.Exact, "globs": info.Globs})
	}
}

// spoolSigned copies a signed body into a file in the data folder and
// checks its length and digest.
func (n *Node) spoolSigned(body io.Reader, stamp peerStamp) (*os.File, error) {
	f, err := os.CreateTemp(n.cfg.DataDir, "restore-upload-*")
	if err != nil {
		return nil, fmt.Errorf("spool upload: %w", err)
	}
	fail := func(err error) (*os.File, error) {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, err
	}
	sum := sha256.New()
	got, err := io.Copy(io.MultiWriter(f, sum), io.LimitReader(body, stamp.length+1))
	if err != nil {
		return fail(&StatusError{Code: http.StatusBadRequest, Body: "upload unreadable: " + err.Error()})
	}
	if got != stamp.length {
		return fail(&StatusError{Code: http.StatusBadRequest, Body: fmt.Sprintf("upload of %d bytes, %d signed", got, stamp.length)})
	}
	if [32]byte(sum.Sum(nil)) != stamp.digest {
		return fail(&StatusError{Code: http.StatusForbidden, Body: "upload does not match its signed digest"})
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	return f, nil
}

// Restore replaces the whole table with the backup in f, cluster-wide:
// the file is read through once to check it (a corrupt or foreign file
// changes nothing), then its rows are staged in entries of a few MiB
// and swapped in by one commit entry. Writes applied between the first
// row entry and the commit are lost with the table they changed.
func (n *Node) Restore(ctx context.Context, f io.ReadSeeker) (fsm.BackupInfo, error) {
	info, err := fsm.ReadBackup(f, nil)
	if err != nil {
		return info, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return info, fmt.Errorf("restore: %w", err)
	}
	var idb [12]byte
	_, _ = rand.Read(idb[:])
	id := "restore-" + hex.EncodeToString(idb[:])
	seq := 0
	apply := func(cmd fsm.Command) error {
		seq++
		cmd.Restore, cmd.ID = id, fmt.Sprintf("%s-%d", id, seq)
		res, err := n.Apply(ctx, cmd)
		if err == nil && res.Err != nil {
			err = res.Err
		}
		if err == nil && res.Outcome != fsm.Applied {
			err = fmt.Errorf("restore %s: another restore began meanwhile (or rows were lost); nothing was replaced", id)
		}
		return err
	}
	if err := apply(fsm.Command{Op: fsm.OpRestoreBegin}); err != nil {
		return info, err
	}
	var rows []fsm.RestoreRow
	size := 0
	_, err = fsm.ReadBackup(f, func(s fsm.Subscription) error {
		rows = append(rows, fsm.RestoreRow{Kind: s.Kind, URL: s.URL, Key: []byte(s.Key), Recovery: s.Recovery})
		// Base64 of the key, quoting and field names.
		if size += len(s.URL) + len(s.Key)*4/3 + len(s.Recovery) + 32; size < restoreChunkBytes {
			return nil
		}
		err := apply(fsm.Command{Op: fsm.OpRestoreRows, Rows: rows})
		rows, size = rows[:0], 0
		return err
	})
	if err == nil && len(rows) > 0 {
		err = apply(fsm.Command{Op: fsm.OpRestoreRows, Rows: rows})
	}
	if err == nil {
		err = apply(fsm.Command{Op: fsm.OpRestoreCommit, Count: info.Exact + info.Globs})
	}
	if err != nil {
		return info, err
	}
	n.log.Info("table restored from a backup", "exact", info.Exact, "globs", info.Globs, "backup_applied_index", info.Applied)
	return info, nil
}
