package ratelog

import (
	"fmt"
	"testing"
	"time"
)

func TestOneLinePerSourcePerInterval(t *testing.T) {
	tb := New(time.Minute, 10)
	t0 := time.Unix(1000, 0)
	if v := tb.Note("a", t0); !v.Log || v.Suppressed != 0 {
		t.Fatalf("first event: %+v, want logged", v)
	}
	for i := 1; i <= 3; i++ {
		if v := tb.Note("a", t0.Add(time.Duration(i)*time.Second)); v.Log {
			t.Fatalf("event %d within the minute was logged", i)
		}
	}
	if v := tb.Note("b", t0.Add(time.Second)); !v.Log {
		t.Fatal("another source is not logged on its own")
	}
	if v := tb.Note("a", t0.Add(time.Minute)); !v.Log || v.Suppressed != 3 {
		t.Fatalf("a minute later: %+v, want logged with 3 suppressed", v)
	}
}

// A flood of distinct sources: the table never grows past its size, no
// source past it is logged on its own, and every event is counted in one
// summary per interval.
func TestFloodOfSourcesIsCountedNotStored(t *testing.T) {
	const size, flood = 16, 100000
	tb := New(time.Minute, size)
	t0 := time.Unix(1000, 0)
	logged, summaries, counted := 0, 0, 0
	note := func(src string, now time.Time) {
		v := tb.Note(src, now)
		if v.Log {
			logged++
		}
		if v.Overflow > 0 {
			summaries++
			counted += v.Overflow
		}
	}
	for i := range flood {
		note(fmt.Sprintf("10.0.%d.%d", i/256, i%256), t0.Add(time.Duration(i)*time.Millisecond/10))
		if tb.Len() > size {
			t.Fatalf("the table holds %d sources, more than %d", tb.Len(), size)
		}
	}
	// 100000 events over 10 s: the table's sources, then silence.
	if logged != size || summaries != 0 {
		t.Fatalf("within the first minute: %d lines and %d summaries, want %d and 0", logged, summaries, size)
	}
	if n := tb.Flush(t0.Add(30 * time.Second)); n != 0 {
		t.Fatalf("Flush before the minute is over: %d", n)
	}
	// A minute on, the next event brings the summary of all that were not
	// stored (and takes a table slot itself, now that the old ones expired).
	note("192.0.2.1", t0.Add(2*time.Minute))
	if summaries != 1 || counted != flood-size || logged != size+1 {
		t.Fatalf("after the minute: %d summaries counting %d, %d lines; want 1 counting %d, %d lines", summaries, counted, logged, flood-size, size+1)
	}
	// A flood that ends is summed up by Flush.
	for i := range size * 2 {
		note(fmt.Sprintf("198.51.100.%d", i), t0.Add(2*time.Minute+time.Second))
	}
	if n := tb.Flush(t0.Add(4 * time.Minute)); n != size+1 {
		t.Fatalf("Flush after the flood ended: %d, want %d", n, size+1)
	}
	if n := tb.Flush(t0.Add(6 * time.Minute)); n != 0 {
		t.Fatalf("a second Flush: %d, want 0", n)
	}
}
