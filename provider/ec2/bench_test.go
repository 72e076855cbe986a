package ec2_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// BenchmarkCreate measures the API side of `up --count N` against moto:
// N Creates with at most 4 at once (as package cluster does), and reports
// the AWS operations made per node. Run:
//
//	go test -run '^$' -bench Create -benchtime 3x ./provider/ec2/
func BenchmarkCreate(b *testing.B) {
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			srv := moto(b)
			var calls int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				srv.Reset(b)
				f := newProvider(b, srv.URL, fmt.Sprintf("bench%d", i), "")
				b.StartTimer()
				sem := make(chan struct{}, 4)
				var wg sync.WaitGroup
				errs := make(chan error, n)
				for j := 0; j < n; j++ {
					wg.Add(1)
					go func(j int) {
						defer wg.Done()
						sem <- struct{}{}
						defer func() { <-sem }()
						if _, err := f.p.Create(context.Background(), spec(b, f.cluster, fmt.Sprintf("n%d", j))); err != nil {
							errs <- err
						}
					}(j)
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				b.StopTimer()
				for _, c := range f.p.Calls() {
					calls += c
				}
			}
			b.ReportMetric(float64(calls)/float64(b.N*n), "calls/node")
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/up")
		})
	}
}
