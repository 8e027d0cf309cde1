# Prints, for each benchmark of test/bench, how much slower (ns/op) the
# tunnel is than the direct baseline of the same run, from the median of the
# repeated runs.
/^Benchmark[A-Za-z0-9]+\/(direct|tunnel)-[0-9]+/ {
	split($1, parts, "/")
	name = parts[1]; sub(/^Benchmark/, "", name)
	via = parts[2]; sub(/-[0-9]+$/, "", via)
	for (i = 2; i <= NF; i++) if ($(i + 1) == "ns/op") { n[name, via]++; v[name, via, n[name, via]] = $i }
	names[name] = 1
}
function median(name, via,    k, i, j, t, a) {
	k = n[name, via]
	for (i = 1; i <= k; i++) a[i] = v[name, via, i]
	for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return a[int((k + 1) / 2)]
}
END {
	print ""
	printf "%-28s %14s %14s %8s\n", "benchmark", "direct ns/op", "tunnel ns/op", "ratio"
	for (name in names) {
		if (!n[name, "direct"] || !n[name, "tunnel"]) continue
		d = median(name, "direct"); t = median(name, "tunnel")
		printf "%-28s %14.0f %14.0f %7.1fx\n", name, d, t, t / d
	}
}
