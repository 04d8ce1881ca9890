//go:build race

package websocket

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// the pooled flate readers and writers are allocated anew now and then.
const raceEnabled = true
