package fsm

import (
	"cmp"
	"slices"
)

// index is the read side used by notify: exact topics and glob patterns
// in maps, each to the set of its subscribers, and the interned URLs.
// A set, once stored, is never changed: a batch that changes it stores a
// changed copy. The maps, multi and the string table are guarded by
// FSM.idxMu; readers hold it to look a set up and to turn its ids into
// strings. The glob patterns are also in FSM.trie, which finds the ones
// matching a topic.
//
// Most topics have one subscriber, so a map value holds one row inline
// and only larger sets take a slice: a row of a one-subscriber topic
// costs its key string and a 24-byte map slot.
type index struct {
	exact map[string]slot // topic -> subscribers
	globs map[string]slot // pattern -> subscribers
	// multi holds the sets of two or more rows, by the index a slot
	// names; freeMulti are its unused places.
	multi     []subs
	freeMulti []uint32
	// strs holds the URLs and recovery URLs the sets name, and each URL's
	// row count (exact and glob together) for the per-URL cap.
	strs          *strTable
	nExact, nGlob int
}

// pair is one row of a subscriber set: the ids of its URL and recovery
// URL in index.strs.
type pair struct{ url, rec uint32 }

// subs is a subscriber set, ascending by URL id.
type subs []pair

// find returns where url's pair is or would be.
func (s subs) find(url uint32) (int, bool) {
	return slices.BinarySearchFunc(s, url, func(p pair, u uint32) int { return cmp.Compare(p.url, u) })
}

// slot is a key's subscriber set as the maps hold it: one pair inline
// (URL id in the high half, recovery id in the low half; URL ids stay
// below 1<<31) or, with multiBit set, the place in index.multi of a set
// of two or more.
type slot uint64

const multiBit slot = 1 << 63

func inline(p pair) slot { return slot(p.url)<<32 | slot(p.rec) }

func (s slot) isMulti() bool { return s&multiBit != 0 }
func (s slot) place() uint32 { return uint32(s) }
func (s slot) pair() pair    { return pair{uint32(s >> 32), uint32(s)} }

func newIndex(exact, globs int) *index {
	return &index{exact: make(map[string]slot, exact), globs: make(map[string]slot, globs), strs: newStrTable()}
}

func (x *index) of(kind Kind) map[string]slot {
	if kind == Glob {
		return x.globs
	}
	return x.exact
}

func (x *index) setLen(s slot) int {
	if s.isMulti() {
		return len(x.multi[s.place()])
	}
	return 1
}

// copySet returns a copy of the set in slot s, with room for one more
// pair, for a batch to change.
func (x *index) copySet(s slot) subs {
	if s.isMulti() {
		set := x.multi[s.place()]
		return append(make(subs, 0, len(set)+1), set...)
	}
	return append(make(subs, 0, 2), s.pair())
}

// find returns the recovery id of url's row in s.
func (x *index) find(s slot, url uint32) (rec uint32, ok bool) {
	if !s.isMulti() {
		p := s.pair()
		return p.rec, p.url == url
	}
	set := x.multi[s.place()]
	if i, ok := set.find(url); ok {
		return set[i].rec, true
	}
	return 0, false
}

// store makes ss.set key's subscribers (none: key goes); ss.old and
// ss.had are what the map holds for key. Callers hold idxMu; the set is
// not changed afterwards.
func (x *index) store(kind Kind, key string, ss stagedSet) {
	m := x.of(kind)
	set, old, had := ss.set, ss.old, ss.had
	if had && old.isMulti() && len(set) < 2 {
		x.multi[old.place()] = nil
		x.freeMulti = append(x.freeMulti, old.place())
	}
	switch {
	case len(set) == 0:
		delete(m, key)
	case len(set) == 1:
		m[key] = inline(set[0])
	case had && old.isMulti():
		x.multi[old.place()] = set
	default:
		m[key] = multiBit | slot(x.addMulti(set))
	}
}

func (x *index) addMulti(set subs) uint32 {
	if n := len(x.freeMulti); n > 0 {
		place := x.freeMulti[n-1]
		x.freeMulti = x.freeMulti[:n-1]
		x.multi[place] = set
		return place
	}
	x.multi = append(x.multi, set)
	return uint32(len(x.multi) - 1)
}

// resolve appends s's rows as subscriptions. Callers hold idxMu.
func (x *index) resolve(out []Subscription, kind Kind, key string, s slot) []Subscription {
	name := func(p pair) Subscription {
		return Subscription{Kind: kind, URL: x.strs.strs[p.url], Key: key, Recovery: x.strs.strs[p.rec]}
	}
	if !s.isMulti() {
		return append(out, name(s.pair()))
	}
	for _, p := range x.multi[s.place()] {
		out = append(out, name(p))
	}
	return out
}

// loader fills an index nobody reads yet from bbolt's rows, which come
// ordered by URL: it remembers the last URL and recovery URL, so most
// rows cost no lookup in the string table.
type loader struct {
	x            *index
	url, rec     []byte
	urlID, recID uint32
	seen         bool
}

// add adds a row and reports whether key is new to the index. A key
// string is allocated only for a key new to the index, a URL only when
// new to the table.
func (l *loader) add(kind Kind, url, key, rec []byte) (newKey bool) {
	x := l.x
	if !l.seen || string(url) != string(l.url) {
		l.url, l.urlID = url, x.strs.internBytes(url)
	}
	if !l.seen || string(rec) != string(l.rec) {
		l.rec, l.recID = rec, x.strs.internBytes(rec)
	}
	l.seen = true
	p := pair{l.urlID, l.recID}
	m := x.of(kind)
	s, ok := m[string(key)]
	switch {
	case !ok:
		m[string(key)] = inline(p)
	case !s.isMulti():
		if s.pair().url == p.url {
			return false // bbolt keys are unique; a row comes once
		}
		set := subs{s.pair(), p}
		slices.SortFunc(set, func(a, b pair) int { return cmp.Compare(a.url, b.url) })
		m[string(key)] = multiBit | slot(x.addMulti(set))
	default:
		set := x.multi[s.place()]
		i, had := set.find(p.url)
		if had {
			return false
		}
		x.multi[s.place()] = slices.Insert(set, i, p)
	}
	x.strs.addRow(p.url, p.rec)
	if kind == Glob {
		x.nGlob++
	} else {
		x.nExact++
	}
	return !ok
}

// done trims the sets' spare capacity left by growing them.
func (l *loader) done() {
	for i, set := range l.x.multi {
		if cap(set) > len(set) {
			l.x.multi[i] = slices.Clone(set)
		}
	}
}
