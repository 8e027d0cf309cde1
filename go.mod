module github.com/enhanced-tunnel/tunnel

go 1.26.0

require (
	// Fault injection in tests and tunnel-stress: toxiproxy's toxics used as a library, no server process.
	github.com/Shopify/toxiproxy/v2 v2.5.0
	// The actor model the design names.
	github.com/asynkron/protoactor-go v0.0.0-20240822202345-3c0e61ca19c9
	// Random 128-bit message ids (PROTOCOL.md asks for UUIDv4-like ids).
	github.com/google/uuid v1.6.0
	github.com/gorilla/websocket v1.5.3
	// The relay reads the PROXY protocol (v1 and v2) from trusted load balancers.
	github.com/pires/go-proxyproto v0.15.0
	github.com/prometheus/client_golang v1.25.0
	// Reading metric values in tests (client_golang's testutil needs more modules).
	github.com/prometheus/client_model v0.6.3
	// toxiproxy logs through zerolog; the fault proxy silences it.
	github.com/rs/zerolog v1.28.0
	github.com/sirupsen/logrus v1.10.2
	// Goroutine-leak checks after Stop.
	go.uber.org/goleak v1.3.0
	// TCP_NOTSENT_LOWAT: a bound on the bytes a socket holds unsent (batchconn).
	golang.org/x/sys v0.48.0
	// Token buckets: the relay's per-address upgrade rate.
	golang.org/x/time v0.16.0
)

require (
	github.com/Workiva/go-datastructures v1.1.3 // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/emirpasic/gods v1.18.1 // indirect
	github.com/go-logr/logr v1.3.0 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/gorilla/mux v1.8.0 // indirect
	github.com/lithammer/shortuuid/v4 v4.0.0 // indirect
	github.com/lmittmann/tint v1.0.3 // indirect
	github.com/mattn/go-colorable v0.1.13 // indirect
	github.com/mattn/go-isatty v0.0.17 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/orcaman/concurrent-map v1.0.0 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/rs/xid v1.4.0 // indirect
	github.com/twmb/murmur3 v1.1.8 // indirect
	go.opentelemetry.io/otel v1.21.0 // indirect
	go.opentelemetry.io/otel/exporters/prometheus v0.44.0 // indirect
	go.opentelemetry.io/otel/metric v1.21.0 // indirect
	go.opentelemetry.io/otel/sdk v1.21.0 // indirect
	go.opentelemetry.io/otel/sdk/metric v1.21.0 // indirect
	go.opentelemetry.io/otel/trace v1.21.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
	gopkg.in/tomb.v1 v1.0.0-20141024135613-dd632973f1e7 // indirect
)
