package fsm

// strTable interns the URLs and recovery URLs of the index: each distinct
// string is held once and rows name it by a uint32 id, so a row costs
// eight bytes for both however long its URLs. Id 0 is the empty string
// (no recovery URL); it is never counted or freed. An id whose last row
// goes is freed and may be given to another string by a later batch, so
// readers turn ids into strings under FSM.idxMu.
type strTable struct {
	strs []string          // id -> string; "" for a free id
	ids  map[string]uint32 // string -> id, for every id in use but 0
	refs []uint32          // rows naming the id as URL or recovery URL
	rows []uint32          // rows whose URL the id is, for the per-URL cap
	free []uint32          // freed ids, reused last first
}

func newStrTable() *strTable {
	return &strTable{strs: []string{""}, ids: map[string]uint32{}, refs: []uint32{0}, rows: []uint32{0}}
}

// lookup returns the id of s, if s is in the table.
func (t *strTable) lookup(s string) (uint32, bool) {
	if s == "" {
		return 0, true
	}
	id, ok := t.ids[s]
	return id, ok
}

// lookupBytes is lookup without converting b to a string (the compiler
// does not allocate for a map index by string(b)).
func (t *strTable) lookupBytes(b []byte) (uint32, bool) {
	if len(b) == 0 {
		return 0, true
	}
	id, ok := t.ids[string(b)]
	return id, ok
}

// reserve returns the id the n-th string new to a batch will get when the
// batch is published (install takes them in the same order): freed ids
// first, then fresh ones.
func (t *strTable) reserve(n int) uint32 {
	if n < len(t.free) {
		return t.free[len(t.free)-1-n]
	}
	return uint32(len(t.strs) + n - len(t.free))
}

// install adds s, which is not in the table, under the id reserve(0)
// names, with no rows yet.
func (t *strTable) install(s string) uint32 {
	var id uint32
	if n := len(t.free); n > 0 {
		id = t.free[n-1]
		t.free = t.free[:n-1]
		t.strs[id] = s
	} else {
		id = uint32(len(t.strs))
		t.strs = append(t.strs, s)
		t.refs = append(t.refs, 0)
		t.rows = append(t.rows, 0)
	}
	t.ids[s] = id
	return id
}

// internBytes returns the id of b, adding it when new; for building an
// index nobody reads yet.
func (t *strTable) internBytes(b []byte) uint32 {
	if id, ok := t.lookupBytes(b); ok {
		return id
	}
	return t.install(string(b))
}

// addRow counts a row naming url and rec.
func (t *strTable) addRow(url, rec uint32) {
	t.rows[url]++
	t.refs[url]++
	if rec != 0 {
		t.refs[rec]++
	}
}

// publish installs a batch's strings new to the table, in the order
// reserve gave them their ids, and its changes to the counts, then frees
// the ids no row names any more.
func (t *strTable) publish(fresh []string, refs, rows map[uint32]int32) {
	for _, s := range fresh {
		t.install(s)
	}
	for id, d := range rows {
		t.rows[id] = uint32(int32(t.rows[id]) + d)
	}
	for id, d := range refs {
		t.refs[id] = uint32(int32(t.refs[id]) + d)
	}
	for id := range refs {
		t.release(id)
	}
}

// release frees id when no row names it any more.
func (t *strTable) release(id uint32) {
	if id == 0 || t.refs[id] != 0 || t.strs[id] == "" {
		return
	}
	delete(t.ids, t.strs[id])
	t.strs[id] = ""
	t.free = append(t.free, id)
}

// rowsOf is the number of rows whose URL is url.
func (t *strTable) rowsOf(url string) int {
	id, ok := t.lookup(url)
	if !ok || id == 0 {
		return 0
	}
	return int(t.rows[id])
}
