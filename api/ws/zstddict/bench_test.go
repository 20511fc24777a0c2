package zstddict

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkSmallMessages compresses ~130-byte JSON messages the way a
// websocket sends them: without a dictionary, with one trained here at the
// low watermark's size and level, and at the high watermark's. It reports
// the compressed size as a fraction of the original and the time per
// message; `make bench-zstd` runs it, docs/benchmarks.md has the figures.
func BenchmarkSmallMessages(b *testing.B) {
	r := rand.New(rand.NewPCG(21, 22))
	train := jsonSamples(r, 8000) // ~1 MiB
	msgs := jsonSamples(r, 1000)  // not trained on
	low, err := Train(train[:800], 16384, 3)
	if err != nil {
		b.Fatal(err)
	}
	high, err := Train(train, 65536, 10)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		dict  *Dict
		level int
	}{
		{"no-dictionary/level3", nil, 3},
		{"low-watermark-dictionary/level3", low, 3},
		{"high-watermark-dictionary/level10", high, 10},
	} {
		c := mustCodec(b, tc.dict, tc.level)
		b.Run(tc.name+"/encode", func(b *testing.B) {
			var in, out int
			var buf []byte
			for i := 0; b.Loop(); i++ {
				m := msgs[i%len(msgs)]
				buf, err = c.EncodeAll(m, buf[:0])
				if err != nil {
					b.Fatal(err)
				}
				in, out = in+len(m), out+len(buf)
			}
			b.ReportMetric(float64(out)/float64(in), "ratio")
		})
		frames := make([][]byte, len(msgs))
		for i, m := range msgs {
			frames[i], _ = c.EncodeAll(m, nil)
		}
		b.Run(tc.name+"/decode", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				j := i % len(msgs)
				if _, err := c.DecodeAll(frames[j], uint64(len(msgs[j]))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("train/low-watermark-100KiB", func(b *testing.B) {
		for b.Loop() {
			if _, err := Train(train[:800], 16384, 3); err != nil {
				b.Fatal(err)
			}
		}
	})
}
