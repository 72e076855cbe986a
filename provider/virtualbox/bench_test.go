package virtualbox

import (
	"crypto/rand"
	"fmt"
	"os"
	"testing"
)

// BenchmarkCreate measures Create (seed ISO and every VBoxManage call)
// against the fake for both clone modes with a 512 MiB base image. The
// fake copies the image for clonemedium and writes a 512-byte header for a
// differencing disk, so the difference is the disk I/O a real clonemedium
// does at least; VirtualBox's own time per call is not measured here.
//
//	go test -run '^$' -bench Create -benchtime 5x ./provider/virtualbox/
func BenchmarkCreate(b *testing.B) {
	for _, clone := range []string{CloneLinked, CloneFull} {
		b.Run(clone, func(b *testing.B) {
			r := newRig(b, "clone: "+clone+"\n")
			f, err := os.OpenFile(r.image, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				b.Fatal(err)
			}
			chunk := make([]byte, 1<<20)
			_, _ = rand.Read(chunk)
			for i := 0; i < 512; i++ {
				if _, err := f.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			f.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				name := fmt.Sprintf("n%d", i)
				inst, err := r.p.Create(b.Context(), r.spec(name, i%200))
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := r.p.Delete(b.Context(), inst.ID); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
