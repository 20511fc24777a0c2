package ws

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lonelypsd/lonelypsd/api/ws/zstddict"
)

// Dictionary training, per connection, as the reference schedules it: the
// messages of 32 bytes up to 16 KiB that pass through the connection (its
// NOTIFYs and what it receives) are collected; at the low watermark (100
// KiB) a 16 KiB dictionary is built for level 3, at the high watermark (10
// MiB, counting the same samples) a 64 KiB one for level 10; then nothing
// is collected for the retrain interval, after which a new collection
// builds a new high-watermark dictionary.
const (
	lowDictSize   = 16 << 10
	lowDictLevel  = 3
	highDictSize  = 64 << 10
	highDictLevel = 10
	// samplesInMemory is what a connection keeps in memory before its
	// samples go to an unlinked temporary file (10 MiB per connection
	// would not scale to thousands of them); the node's connections
	// together keep at most Config.MaxTrainingMemory.
	samplesInMemory = 256 << 10
	// maxTrainingInput bounds what one dictionary is built from: the
	// builder's time grows faster than its input (2 MiB of JSON take 0.5 s
	// of CPU, 4 MiB of random bytes 4 s, 10 MiB about 25), and beyond 2 MiB
	// the dictionaries improve by about one percent, so past it an evenly
	// spread subset of the samples is used.
	maxTrainingInput = 2 << 20
	// incompressible: samples that zstd without a dictionary shrinks by
	// less than this fraction share nothing a dictionary could hold
	// (random or encrypted bytes); building one would burn seconds of CPU
	// for nothing, so it is not tried.
	incompressible = 0.95
	probeBytes     = 256 << 10
)

type trainStage uint8

const (
	beforeLow trainStage = iota
	beforeHigh
	waiting // for the retrain interval
)

// trainer collects a connection's samples and schedules its dictionaries.
// Samples come from the processor (NOTIFYs) and the writer (deliveries);
// dictionaries are built by the connection's training goroutine.
type trainer struct {
	mu        sync.Mutex
	s         samples
	stage     trainStage
	nextID    uint64
	lastBuilt time.Time
	stopped   bool
	jobs      chan trainJob
}

// trainJob is a dictionary to build. The low-watermark one is built from
// the collection as it is when its turn comes (the collection goes on);
// the high-watermark one takes the collection with it (own), and the next
// collection starts empty.
type trainJob struct {
	id          uint64
	size, level int
	own         *samples
}

func newTrainer(h *Hub) *trainer {
	// Two jobs at most between two retrain intervals (low and high).
	return &trainer{s: samples{dir: h.cfg.SpoolDir, mem: &h.sampleMem, memLimit: h.cfg.MaxTrainingMemory},
		nextID: firstCustomID, jobs: make(chan trainJob, 2)}
}

// sample offers a message that passed through the connection.
func (c *conn) sample(p []byte) {
	t := c.trainer
	if t == nil || len(p) < minCompressSize || len(p) >= trainedMaxSize {
		return
	}
	cfg := &c.hub.cfg
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if t.stage == waiting {
		if time.Since(t.lastBuilt) < cfg.RetrainInterval {
			return
		}
		t.stage = beforeHigh
	}
	if err := t.s.add(p); err != nil {
		c.stopTraining(err)
		return
	}
	if t.stage == beforeLow && t.s.bytes >= cfg.TrainingLowWatermark {
		t.stage = beforeHigh
		if t.s.bytes < cfg.TrainingHighWatermark {
			c.schedule(lowDictSize, lowDictLevel, false)
			return
		}
	}
	if t.stage == beforeHigh && t.s.bytes >= cfg.TrainingHighWatermark {
		c.schedule(highDictSize, highDictLevel, true)
		t.stage, t.lastBuilt = waiting, time.Now()
	}
}

// schedule queues a dictionary for the training goroutine; last hands it
// the collection. Nothing is read here: a job waiting for a training token
// holds at most the collection's share of memory, not a copy of it.
// Called with t.mu.
func (c *conn) schedule(size, level int, last bool) {
	t := c.trainer
	job := trainJob{id: t.nextID, size: size, level: level}
	t.nextID++
	if last {
		own := t.s
		job.own = &own
		t.s = own.fresh()
	}
	select {
	case t.jobs <- job:
	default:
		// Only when the retrain interval is shorter than building the
		// previous dictionaries takes: this one is dropped, a later
		// collection makes the next.
		if job.own != nil {
			job.own.reset()
		}
		c.log.Warn("dictionary training skipped: the previous ones are still being built", "id", job.id)
	}
}

// spread returns at most about limit bytes of samples (which hold total),
// taken evenly across them so that every period of the collection counts.
func spread(samples [][]byte, total, limit int64) [][]byte {
	if total <= limit || len(samples) == 0 {
		return samples
	}
	keep := max(1, int(int64(len(samples))*limit/total))
	out := make([][]byte, 0, keep)
	for i := range keep {
		out = append(out, samples[i*len(samples)/keep])
	}
	return out
}

// stopTraining ends training on this connection (a spool failure); what
// was announced stays in use. Called with t.mu.
func (c *conn) stopTraining(err error) {
	c.log.Warn("dictionary training stopped on this connection", "err", err)
	c.trainer.stopped = true
	c.trainer.s.reset()
}

// trainLoop builds the scheduled dictionaries, one at a time, each after
// taking one of the node's training tokens, and puts them in use.
func (c *conn) trainLoop() {
	t := c.trainer
	defer func() {
		t.mu.Lock()
		t.stopped = true // no job is queued after this
		t.s.reset()
		t.mu.Unlock()
		for {
			select {
			case job := <-t.jobs:
				if job.own != nil {
					job.own.reset()
				}
			default:
				return
			}
		}
	}()
	for {
		var job trainJob
		select {
		case job = <-t.jobs:
		case <-c.ctx.Done():
			return
		}
		select {
		case c.hub.trainSem <- struct{}{}:
		case <-c.ctx.Done():
			if job.own != nil {
				job.own.reset()
			}
			return
		}
		c.train(job)
		<-c.hub.trainSem
	}
}

// train builds one dictionary and puts it in use.
func (c *conn) train(job trainJob) {
	t := c.trainer
	var all [][]byte
	var total int64
	var err error
	if job.own != nil {
		all, err = job.own.all()
		total = job.own.bytes
		job.own.reset()
	} else {
		t.mu.Lock()
		all, err = t.s.all()
		total = t.s.bytes
		t.mu.Unlock()
	}
	if err != nil {
		c.log.Warn("dictionary not trained", "id", job.id, "err", err)
		return
	}
	start := time.Now()
	input := spread(all, total, maxTrainingInput)
	if r := c.hub.compressibility(input); r > incompressible {
		c.log.Info("dictionary not trained: the samples do not compress", "id", job.id, "samples_bytes", total, "ratio", r)
		c.hub.training.skipped.Add(1)
		return
	}
	d, err := zstddict.Train(input, job.size, job.level)
	if err != nil {
		// The builder finds nothing to learn when the samples are all
		// alike; they compress, so the newest of them, as raw content,
		// make a good dictionary.
		c.log.Debug("dictionary builder failed; using the samples as raw content", "id", job.id, "err", err)
		if d, err = zstddict.Raw(input, job.size); err != nil {
			c.log.Info("dictionary not trained", "id", job.id, "samples_bytes", total, "err", err)
			c.hub.training.failed.Add(1)
			return
		}
	}
	codec, err := zstddict.NewCodec(d, job.level, c.hub.cfg.DecompressionMaxWindow)
	if err != nil {
		c.log.Info("trained dictionary unusable", "id", job.id, "err", err)
		return
	}
	c.log.Debug("dictionary trained", "id", job.id, "samples_bytes", total,
		"dict_bytes", len(d.Bytes()), "took", time.Since(start))
	c.hub.training.trained.Add(1)
	c.addCustom(&compressor{id: job.id, level: job.level, min: minCompressSize, max: trainedMaxSize, codec: codec})
}

// trainingStats count dictionaries by outcome, node-wide.
type trainingStats struct {
	trained, skipped, failed atomic.Int64
}

// TrainingStats returns how many dictionaries this node has trained, not
// tried because the samples did not compress, and failed to build.
func (h *Hub) TrainingStats() (trained, skipped, failed int64) {
	return h.training.trained.Load(), h.training.skipped.Load(), h.training.failed.Load()
}

// compressibility is how well compressor 1 shrinks about probeBytes of the
// samples (taken across them), as a fraction of their size.
func (h *Hub) compressibility(samples [][]byte) float64 {
	probe := make([]byte, 0, probeBytes)
	for _, p := range spread(samples, int64(totalLen(samples)), probeBytes) {
		probe = append(probe, p...)
	}
	if len(probe) == 0 {
		return 1
	}
	out, err := h.plain.codec.EncodeAll(probe, nil)
	if err != nil {
		return 1
	}
	return float64(len(out)) / float64(len(probe))
}

func totalLen(samples [][]byte) int {
	n := 0
	for _, p := range samples {
		n += len(p)
	}
	return n
}

// addCustom puts a trained dictionary in use: decodable at once, announced
// in order with the deliveries. With two in use already, the older one is
// withdrawn first (DISABLE_ZSTD_CUSTOM) but stays decodable until the
// next one replaces it: a NOTIFY the peer compressed with it before the
// withdrawal reached it is still in flight.
func (c *conn) addCustom(z *compressor) {
	c.zmu.Lock()
	c.customs = append(c.customs, z)
	c.decoders[z.id] = z
	var evict *compressor
	if len(c.customs) > 2 {
		evict = c.customs[0]
		c.customs = c.customs[1:]
		if c.retired != nil {
			delete(c.decoders, c.retired.id)
		}
		c.retired = evict
	}
	c.zmu.Unlock()
	if evict != nil {
		c.enqueueControl(item{kind: itemDisableZstd, comp: evict})
	}
	c.enqueueControl(item{kind: itemEnableZstd, comp: z})
}

// samples holds length-prefixed samples: in memory, then in an unlinked
// temporary file.
type samples struct {
	dir      string
	mem      *atomic.Int64 // the node's sample bytes in memory
	memLimit int64
	buf      []byte
	f        *os.File
	bytes    int64 // sample content, what the watermarks count
	count    int
}

func (s *samples) add(p []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(p)))
	grow := int64(len(p) + 4)
	if s.f == nil && (len(s.buf)+int(grow) > samplesInMemory || s.mem.Load()+grow > s.memLimit) {
		f, err := os.CreateTemp(s.dir, "lonelypsd-samples-*")
		if err != nil {
			return fmt.Errorf("training samples: %w", err)
		}
		_ = os.Remove(f.Name()) // the descriptor keeps it; the kernel frees it
		if _, err := f.Write(s.buf); err != nil {
			_ = f.Close()
			return fmt.Errorf("training samples: %w", err)
		}
		s.mem.Add(-int64(len(s.buf)))
		s.f, s.buf = f, nil
	}
	if s.f != nil {
		if _, err := s.f.Write(append(n[:], p...)); err != nil {
			return fmt.Errorf("training samples: %w", err)
		}
	} else {
		s.buf = append(append(s.buf, n[:]...), p...)
		s.mem.Add(grow)
	}
	s.bytes += int64(len(p))
	s.count++
	return nil
}

// all returns every sample collected.
func (s *samples) all() ([][]byte, error) {
	buf := s.buf
	if s.f != nil {
		end, err := s.f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("training samples: %w", err)
		}
		buf = make([]byte, end)
		if _, err := s.f.ReadAt(buf, 0); err != nil {
			return nil, fmt.Errorf("training samples: %w", err)
		}
	} else {
		buf = append([]byte(nil), buf...)
	}
	out := make([][]byte, 0, s.count)
	for len(buf) >= 4 {
		n := int(binary.BigEndian.Uint32(buf))
		if len(buf) < 4+n {
			return nil, fmt.Errorf("training samples: truncated")
		}
		out = append(out, buf[4:4+n:4+n])
		buf = buf[4+n:]
	}
	return out, nil
}

func (s *samples) reset() {
	if s.f != nil {
		_ = s.f.Close()
	}
	s.mem.Add(-int64(len(s.buf)))
	*s = s.fresh()
}

// fresh returns an empty collection with the same budget.
func (s *samples) fresh() samples {
	return samples{dir: s.dir, mem: s.mem, memLimit: s.memLimit}
}
