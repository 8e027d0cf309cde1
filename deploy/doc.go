// Package deploy holds what runs the binaries in production, and no Go
// code: Prometheus alerting rules and their unit tests (prometheus/), Grafana
// dashboards (grafana/), systemd units (systemd/) and the container build
// (Dockerfile). Its tests check them: the rules with promtool, every metric
// the rules and dashboards name against what a live relay and supervisor
// export, the units with systemd-analyze, and that both binaries build
// static, as the Dockerfile builds them.
package deploy
