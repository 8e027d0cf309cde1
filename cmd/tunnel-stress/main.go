package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/enhanced-tunnel/tunnel/test/stress"
)

func main() {
	cfg := stress.DefaultConfig()
	cfg.Duration = 20 * time.Second
	cfg.Progress = os.Stderr
	rep, err := stress.Run(context.Background(), cfg)
	if err != nil {
		fmt.Println("err", err)
	}
	if rep != nil {
		rep.WriteSummary(os.Stdout)
		b, _ := json.Marshal(rep)
		fmt.Println(string(b))
	}
}
