package sshclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
)

// Result is the outcome of a command on one node of RunAll.
type Result struct {
	Node string
	Code int   // exit status
	Err  error // a *HostKeyError, or why ssh could not run
}

// RunAll runs command on every target, at most parallel at once, with no
// standard input. Each line a node prints goes to out (or errOut) as
// "NAME: line"; lines from different nodes never mix within a line. It
// returns the results in the order of targets.
func (c Client) RunAll(ctx context.Context, targets []Target, command []string, parallel int, out, errOut io.Writer) []Result {
	if parallel < 1 {
		parallel = 1
	}
	var mu sync.Mutex // one lock for both streams keeps lines whole
	results := make([]Result, len(targets))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			o := &PrefixWriter{W: out, Prefix: t.Name + ": ", Mu: &mu}
			e := &PrefixWriter{W: errOut, Prefix: t.Name + ": ", Mu: &mu}
			code, err := c.Run(ctx, t, command, IO{Stdout: o, Stderr: e})
			o.Flush()
			e.Flush()
			results[i] = Result{Node: t.Name, Code: code, Err: err}
		}()
	}
	wg.Wait()
	return results
}

// Worst returns the worst exit status of results: the highest one (so ssh's
// own 255 outranks any remote status, and any failure outranks 0).
func Worst(results []Result) int {
	worst := 0
	for _, r := range results {
		worst = max(worst, r.Code)
	}
	return worst
}

// PrefixWriter writes each complete line to W as Prefix + line, holding Mu
// while it does. A last line without a newline is written by Flush.
type PrefixWriter struct {
	W      io.Writer
	Prefix string
	Mu     *sync.Mutex
	buf    []byte
}

func (p *PrefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	var out []byte
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		out = append(out, p.Prefix...)
		out = append(out, p.buf[:i+1]...)
		p.buf = p.buf[i+1:]
	}
	if len(out) > 0 {
		if err := p.emit(out); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// Flush writes a pending partial line, ended with a newline.
func (p *PrefixWriter) Flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	line := fmt.Sprintf("%s%s\n", p.Prefix, p.buf)
	p.buf = nil
	return p.emit([]byte(line))
}

func (p *PrefixWriter) emit(b []byte) error {
	p.Mu.Lock()
	defer p.Mu.Unlock()
	_, err := p.W.Write(b)
	return err
}
