// Package globmatch matches topics against glob subscriptions with the
// semantics of SQLite's GLOB operator, the one the reference broadcaster
// (lonelypss) means to use, and indexes a set of globs so that a published
// topic is not tested against every one of them.
//
// # Semantics
//
// A pattern matches a topic when the whole topic matches, case-sensitively:
//
//   - '*' matches any sequence of characters, empty or not, including '/'
//     (there are no separators: "a/*" matches "a/b/c", and "**" is "*");
//   - '?' matches exactly one character, that is one UTF-8 code point;
//   - '[...]' matches one character of a set: ranges "a-c"; a ']' right
//     after the '[' (or the "[^") is a member; "[^...]" negates, while a
//     leading '!' is an ordinary member ("[!a]" matches "!" and "a"); a '-'
//     first, last or right after a range is a member; a reversed range
//     "[z-a]" adds nothing but its low end, which is a member in its own
//     right (SQLite reads "z" as a member before it sees the '-', so
//     "[z-a]" matches "z" and nothing else);
//   - there is no escape character: '\' is a literal ("\*" matches "\"
//     followed by anything; write "[*]", "[?]" or "[[]" for the literals);
//   - '{', '}' and ',' are literals (no alternatives);
//   - a '[' without its closing ']' (including "[]" and "[^]", whose ']' is
//     a member) makes the pattern match nothing;
//   - every other character matches itself; a leading '.' is not special.
//
// Two rules of this package depart from SQLite on purpose:
//
//   - A topic that is not valid UTF-8 matches no glob, whatever the pattern
//     (a non-UTF-8 topic reaches exact subscriptions only). SQLite instead
//     decodes invalid sequences leniently ("?" matches "\xff").
//   - NUL is an ordinary character, in topics and patterns alike. SQLite
//     works on NUL-terminated strings and ignores everything after a NUL:
//     there "a" matches "a\x00b"; here it does not, while "a?b" does.
//
// Patterns must be valid UTF-8: Compile returns ErrInvalidUTF8 otherwise.
// Every valid UTF-8 string is a pattern. SQLite additionally refuses
// patterns longer than 50,000 bytes at match time; this package does not,
// so a length limit is for the caller (the API) to set.
//
// # Engines
//
// A pattern of literals and '*' only is matched from its own text: its
// first literal run must begin the topic, its last end it, and the runs
// between stars are found left to right (Pattern.Engine reports "stars").
// Other patterns are matched by github.com/gobwas/glob, a compiled
// matcher: Compile translates the SQLite syntax into gobwas syntax (see
// translate.go), compiled with no separators. gobwas cannot express every
// class; a class that mixes ranges with other members is expanded into the
// set of its code points, and when it has more than maxExpand (256) of
// them the pattern is matched by this package's port of SQLite's algorithm
// instead (sqlite.go; Pattern.Engine reports "fallback"). The port takes
// time O(len(pattern) * len(topic)) at worst, whatever the number of
// stars. gobwas keeps a single restart point per run of stars as well, and
// stays in the same order on the star-heavy shapes the tests try, because
// the translation never uses gobwas alternatives ("{a,b}"): with them its
// backtracking is exponential.
//
// The port is also the oracle of the tests: the engines are checked
// against it on an 81-row table of SQLite GLOB results, on random and
// fuzzed pairs, and the port itself against cases evaluated by SQLite
// 3.40.1 (testdata/sqlite_vectors.jsonl).
//
// # Index
//
// Every topic a pattern matches contains the pattern's literal runs, so
// Index files each pattern under one of them: its literal prefix (the
// bytes before its first '*', '?' or '[') in a front radix tree, its
// literal suffix (the bytes after its last wildcard) in a back radix tree,
// or its longest literal run between two wildcards in a tree walked from
// every offset of the topic, whichever holds the fewest patterns when it
// is added (the longest on a tie). Match tests only the
// patterns whose key the topic holds there, and the few without any
// literal ("*", "?*", "[a-z]*"), which it tests for every topic. The result
// of a topic that tested many patterns is cached until the Index changes.
// The trees are persistent: Clone is O(1), and a clone copies the nodes it
// changes, so the fsm changes a clone per batch of writes while notifies
// match on the published original without a lock.
package globmatch
