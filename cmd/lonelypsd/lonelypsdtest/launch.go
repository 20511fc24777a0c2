package lonelypsdtest

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

// Launch starts the process without waiting for it to serve. Unlike
// Start it may be called from any goroutine.
func (p *Proc) Launch() error {
	cmd := Command(p.bin, p.Args...)
	cmd.Stdout = os.Stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return fmt.Errorf("stderr of lonelypsd: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start lonelypsd: %w", err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go p.collect(stderr)
	return nil
}

// collect keeps the process's stderr and notes its exit.
func (p *Proc) collect(stderr io.Reader) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.logs.WriteString(sc.Text() + "\n")
		p.mu.Unlock()
	}
	p.err = p.cmd.Wait()
	close(p.done)
}

// Logs returns what the process wrote to stderr, over all its starts.
func (p *Proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}
