package integration

import (
	"bytes"
	"io"
	"strconv"
	"testing"
	"time"
)

func TestScratchStallThenFullRead(t *testing.T) {
	w, r, tn := connect(t, echoUpstream(), nil, nil)
	const size = 48 << 20
	resp, err := w.client.Get(publicURL(r, "/blob?size="+strconv.Itoa(size)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got bytes.Buffer
	tick := time.NewTicker(20 * time.Millisecond)
	for i := 0; i < 100; i++ {
		<-tick.C
		io.CopyN(&got, resp.Body, 512)
	}
	tick.Stop()
	start := time.Now()
	_, err = io.Copy(&got, resp.Body)
	t.Logf("rest in %v: %v, %d bytes; status %+v", time.Since(start), err, got.Len(), tn.Status().Health)
	if err != nil || got.Len() != size {
		t.Errorf("broken: %v", err)
	}
}
