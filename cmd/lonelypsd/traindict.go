package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/lonelypsd/lonelypsd/api/ws/zstddict"
)

// runTrainDict is `lonelypsd train-dict`: builds a zstd dictionary from
// sample messages, for --ws-preset-dict on the broadcaster and the same
// file in the clients' compression_dictionary_by_id.
func runTrainDict(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("train-dict", "Usage: lonelypsd train-dict --out FILE [flags] SAMPLE_FILE...\n\n"+
		"Builds a zstd dictionary from sample messages (32 bytes up to 16 KiB each are\n"+
		"what dictionaries help). Then serve with --ws-preset-dict ID:LEVEL:FILE and\n"+
		"give the clients the same file under the same ID.\n\n", stderr)
	out := fs.String("out", "", "file to write the dictionary to (required; not overwritten)")
	size := fs.Int("size", 16384, "largest dictionary size in bytes")
	level := fs.Int("level", 3, "zstd level the dictionary is tuned for; give the same to --ws-preset-dict")
	lines := fs.Bool("lines", false, "each line of the files is a sample (default: each file is one)")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	if *out == "" || fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if *size < 256 || *size > 1<<20 {
		fmt.Fprintln(stderr, "lonelypsd train-dict: --size must be 256 to 1048576 bytes")
		return 2
	}
	var samples [][]byte
	total := 0
	for _, path := range fs.Args() {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(stderr, "lonelypsd train-dict: %v\n", err)
			return 1
		}
		if !*lines {
			samples, total = append(samples, b), total+len(b)
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			if len(sc.Bytes()) > 0 {
				samples, total = append(samples, bytes.Clone(sc.Bytes())), total+len(sc.Bytes())
			}
		}
		if err := sc.Err(); err != nil {
			fmt.Fprintf(stderr, "lonelypsd train-dict: %s: %v\n", path, err)
			return 1
		}
	}
	d, err := zstddict.Train(samples, *size, *level)
	if err != nil {
		fmt.Fprintf(stderr, "lonelypsd train-dict: %v (from %d samples, %d bytes; more, and more alike, samples help)\n", err, len(samples), total)
		return 1
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		fmt.Fprintf(stderr, "lonelypsd train-dict: %v\n", err)
		return 1
	}
	if _, err := f.Write(d.Bytes()); err != nil {
		_ = f.Close()
		fmt.Fprintf(stderr, "lonelypsd train-dict: %v\n", err)
		return 1
	}
	if err := f.Close(); err != nil {
		fmt.Fprintf(stderr, "lonelypsd train-dict: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: %d-byte dictionary from %d samples (%d bytes)\n", *out, len(d.Bytes()), len(samples), total)
	return 0
}
