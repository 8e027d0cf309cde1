//go:build !linux

package batchconn

import "syscall"

// limitUnsent does nothing where TCP_NOTSENT_LOWAT is not known.
func limitUnsent(syscall.Conn, int) error { return nil }
