package fsm

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// backupOf writes f's table to bytes.
func backupOf(t *testing.T, f *FSM) ([]byte, BackupInfo) {
	t.Helper()
	var buf bytes.Buffer
	info, err := f.WriteBackup(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), info
}

// restoreCommands turns a backup into the entries that restore it, rows
// chunked per entry.
func restoreCommands(t *testing.T, id string, file []byte, perEntry int) []Command {
	t.Helper()
	cmds := []Command{{Op: OpRestoreBegin, Restore: id}}
	var rows []RestoreRow
	flush := func() {
		if len(rows) > 0 {
			cmds = append(cmds, Command{Op: OpRestoreRows, Restore: id, Rows: rows})
			rows = nil
		}
	}
	info, err := ReadBackup(bytes.NewReader(file), func(s Subscription) error {
		rows = append(rows, RestoreRow{Kind: s.Kind, URL: s.URL, Key: []byte(s.Key), Recovery: s.Recovery})
		if len(rows) == perEntry {
			flush()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	flush()
	return append(cmds, Command{Op: OpRestoreCommit, Restore: id, Count: info.Exact + info.Globs})
}

func TestBackupRestoresAnEqualTable(t *testing.T) {
	src, _ := openTest(t)
	a := &applier{t: t, f: src}
	a.apply(
		sub("a"), sub("b\xff\x00binary"),
		Command{Op: OpSubscribeGlob, URL: u2, Glob: "x/*"},
		Command{Op: OpSubscribeGlob, URL: u1, Glob: "x/[ab]?", Recovery: rec},
		Command{Op: OpSubscribeExact, URL: u2, Topic: []byte("a")},
	)
	file, info := backupOf(t, src)
	if info.Exact != 3 || info.Globs != 2 || info.Applied != a.index {
		t.Fatalf("info %+v", info)
	}

	dst, _ := openTest(t)
	b := &applier{t: t, f: dst}
	// The destination has rows of its own, which the restore drops.
	b.apply(Command{Op: OpSubscribeExact, URL: "http://127.0.0.1:9/gone", Topic: []byte("old")})
	for i, r := range b.apply(restoreCommands(t, "r1", file, 2)...) {
		if r.Err != nil || r.Outcome != Applied {
			t.Fatalf("entry %d: %+v", i, r)
		}
	}
	if got, want := dst.All(), src.All(); !slices.Equal(got, want) {
		t.Fatalf("restored %v, want %v", got, want)
	}
	if got := dst.Match([]byte("x/ab")); len(got) != 2 {
		t.Fatalf("glob index not rebuilt: %v", got)
	}
	again, _ := backupOf(t, dst)
	_, i1 := ReadBackup(bytes.NewReader(file), nil)
	_, i2 := ReadBackup(bytes.NewReader(again), nil)
	if i1 != nil || i2 != nil {
		t.Fatal(i1, i2)
	}
}

func TestRestoreRefusesStaleAndIncomplete(t *testing.T) {
	src, _ := openTest(t)
	(&applier{t: t, f: src}).apply(sub("a"), sub("b"), sub("c"))
	file, _ := backupOf(t, src)

	dst, _ := openTest(t)
	b := &applier{t: t, f: dst}
	b.apply(sub("keep"))
	cmds := restoreCommands(t, "r1", file, 1)
	tests := []struct {
		name string
		cmds []Command
	}{
		{"rows missing", append(append([]Command{}, cmds[:2]...), cmds[len(cmds)-1])},
		{"another restore began", append(append(append([]Command{}, cmds[:2]...), Command{Op: OpRestoreBegin, Restore: "r2"}), cmds[2:]...)},
		{"commit without begin", cmds[len(cmds)-1:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := b.apply(tt.cmds...)
			if last := res[len(res)-1]; last.Outcome != Conflict {
				t.Fatalf("commit %+v, want Conflict", last)
			}
			if got := dst.All(); len(got) != 1 || got[0].Key != "keep" {
				t.Fatalf("table changed: %v", got)
			}
		})
	}
}

func TestRestoreThenWritesInOneBatch(t *testing.T) {
	src, _ := openTest(t)
	(&applier{t: t, f: src}).apply(sub("a"), sub("b"))
	file, _ := backupOf(t, src)
	dst, _ := openTest(t)
	b := &applier{t: t, f: dst}
	cmds := restoreCommands(t, "r1", file, 10)
	capped := sub("c")
	capped.MaxPerURL = 2
	res := b.apply(append(cmds, capped, sub("d"))...)
	if res[len(res)-2].Outcome != TooMany || res[len(res)-1].Outcome != Applied {
		t.Fatalf("writes after the restore: %+v", res[len(res)-2:])
	}
	if got := dst.Match([]byte("d")); len(got) != 1 {
		t.Fatalf("a write after the restore in the same batch is not indexed: %v", got)
	}
}

func TestReadBackupRefusals(t *testing.T) {
	src, _ := openTest(t)
	(&applier{t: t, f: src}).apply(sub("a"), sub("b"))
	good, _ := backupOf(t, src)
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name string
		file []byte
	}{
		{"empty", nil},
		{"foreign", []byte("SQLite format 3\x00 and more bytes than a header")},
		{"version", flip(len(backupMagic) + 1)},
		{"flipped row byte", flip(len(backupMagic) + 20)},
		{"flipped digest", flip(len(good) - 1)},
		{"truncated", good[:len(good)-10]},
		{"trailing bytes", append(bytes.Clone(good), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadBackup(bytes.NewReader(tt.file), nil); !errors.Is(err, ErrBadBackup) {
				t.Fatalf("err %v, want ErrBadBackup", err)
			}
		})
	}
	if _, err := ReadBackup(bytes.NewReader(good), nil); err != nil {
		t.Fatal(err)
	}
}

// FuzzReadBackup: no file makes ReadBackup panic or hang, and a file it
// accepts yields exactly the rows its trailer counts, each within the
// limits a restore entry is held to.
func FuzzReadBackup(f *testing.F) {
	src, _ := openTest(f)
	a := &applier{t: f, f: src}
	a.apply(sub("a"), sub("b\xff"), Command{Op: OpSubscribeGlob, URL: u2, Glob: "x/*", Recovery: rec})
	var good bytes.Buffer
	if _, err := src.WriteBackup(&good); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:len(good.Bytes())/2])
	f.Add([]byte(backupMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		var rows []Subscription
		info, err := ReadBackup(bytes.NewReader(b), func(s Subscription) error {
			rows = append(rows, s)
			return nil
		})
		if err != nil {
			if !errors.Is(err, ErrBadBackup) {
				t.Fatalf("refusal not wrapping ErrBadBackup: %v", err)
			}
			return
		}
		if len(rows) != info.Exact+info.Globs {
			t.Fatalf("%d rows read, info counts %d", len(rows), info.Exact+info.Globs)
		}
		for _, s := range rows {
			r := RestoreRow{Kind: s.Kind, URL: s.URL, Key: []byte(s.Key), Recovery: s.Recovery}
			if err := (Command{Op: OpRestoreRows, Restore: "r", Rows: []RestoreRow{r}}).Validate(); err != nil {
				t.Fatalf("accepted row %+v fails Validate: %v", s, err)
			}
		}
	})
}
