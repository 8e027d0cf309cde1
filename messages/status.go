package messages

import "time"

// Status is the tunnel's status in the seed's shape. Every key is always
// present in its JSON: failure_types is {} when empty, and
// time_since_last_success is null before the first success. Durations are
// seconds as floats.
type Status struct {
	State          State         `json:"state"`
	Connected      bool          `json:"connected"` // true only in AUTHENTICATED
	Tunnel         string        `json:"tunnel"`
	Health         Health        `json:"health"`
	CircuitBreaker BreakerReport `json:"circuit_breaker"`

	// ReadyConnections counts the connections in AUTHENTICATED; Connections
	// has one entry per connection, in index order. Both are set on a
	// tunnel's aggregate status, and empty on one connection's own.
	ReadyConnections int                `json:"ready_connections"`
	Connections      []ConnectionStatus `json:"connections,omitempty"`
}

// ConnectionStatus is one connection's part of a tunnel's status, in the
// seed's shape.
type ConnectionStatus struct {
	Index          int           `json:"index"`
	RelayURL       string        `json:"relay_url"` // password redacted
	State          State         `json:"state"`
	Connected      bool          `json:"connected"`
	Health         Health        `json:"health"`
	CircuitBreaker BreakerReport `json:"circuit_breaker"`
}

// Health is the ledger's account of attempts, failures, stability and timing.
type Health struct {
	SuccessRate          float64        `json:"success_rate"` // successes / attempts, 0 to 1
	TotalAttempts        int            `json:"total_attempts"`
	Successes            int            `json:"successes"`
	ConsecutiveFailures  int            `json:"consecutive_failures"`
	TimeSinceLastSuccess *float64       `json:"time_since_last_success"`
	FailureTypes         map[string]int `json:"failure_types"`
	LastError            string         `json:"last_error"`
	LastFailureType      string         `json:"last_failure_type"`

	// Stability of connections.
	Uptime            *float64 `json:"uptime"` // of the current authenticated connection; null when none
	Drops             int      `json:"drops"`  // authenticated connections that ended in a failure
	MeanConnectedTime float64  `json:"mean_connected_time"`

	// Timing.
	LastConnectTime  *float64 `json:"last_connect_time"` // dial to auth_ok
	MeanConnectTime  float64  `json:"mean_connect_time"`
	LastHeartbeatRTT *float64 `json:"last_heartbeat_rtt"`
	MeanHeartbeatRTT float64  `json:"mean_heartbeat_rtt"`

	Transitions []Transition `json:"recent_transitions"` // newest last
}

// Transition is one state change the ledger saw.
type Transition struct {
	Connection int       `json:"connection"`
	From       State     `json:"from"`
	To         State     `json:"to"`
	At         time.Time `json:"at"`
}

// BreakerReport is the circuit breaker's part of the status.
type BreakerReport struct {
	Active     bool         `json:"active"`      // open: attempts are held back
	RecoveryIn float64      `json:"recovery_in"` // seconds until the trial; 0 unless active
	State      BreakerState `json:"state"`
	Openings   int          `json:"openings"`
}
