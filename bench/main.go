// Command bench measures sekisho against a direct PostgreSQL connection and
// pgbouncer (session pooling) in one run on one machine:
//
//	go run ./bench [-seconds 10] [-out bench/out]
//
// It starts a throwaway PostgreSQL with the demo data and pgbench's tables,
// the sekisho binary (built from this tree) as a separate process, and
// pgbouncer from the Debian package, all on loopback with TLS off so the
// three are comparable. It prints a Markdown report; paste it, with the date
// and the command, into bench/RESULTS.md.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sekisho/sekisho/internal/demodata"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/pglocal"
	"github.com/sekisho/sekisho/internal/sqlscope"
	"github.com/sekisho/sekisho/internal/store"
)

var (
	seconds  = flag.Int("seconds", 3, "duration of each pgbench run")
	rounds   = flag.Int("rounds", 9, "rounds of the TPS, latency and proxy-CPU runs; each round runs every target once, in a rotating order (a 3 s run varies by ±10% on a shared VM: more, shorter rounds pair runs closer in time)")
	bulkRnds = flag.Int("bulk-rounds", 10, "rounds of the bulk reads of hcp (a read takes 1-2 s and varies by ±15% on a shared VM)")
	scale    = flag.Int("scale", 10, "pgbench scale factor")
	hcpRows  = flag.Int("hcp-rows", demodata.HCPRows, "rows in hcp")
	outDir   = flag.String("out", "bench/out", "where logs go")
	skipTPS  = flag.Bool("skip-tps", false, "skip the pgbench runs")
	skipBulk = flag.Bool("skip-bulk", false, "skip the bulk reads")
	onlyConn = flag.Bool("only-connect", false, "run only the new-connection measurement")
	onlyPol  = flag.Bool("only-policy", false, "run only the data-policy measurements")
	hold     = flag.Bool("hold", false, "start everything, print the targets and wait for Ctrl-C (for profiling by hand)")
)

type target struct {
	name string
	url  string
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: error:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	if *rounds < 1 || *bulkRnds < 1 || *seconds < 1 {
		return fmt.Errorf("-rounds, -bulk-rounds and -seconds must be at least 1 (got %d, %d, %d)", *rounds, *bulkRnds, *seconds)
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "sekisho-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	os.Chmod(work, 0o755)

	bin := filepath.Join(work, "sekisho")
	step("building sekisho")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/sekisho").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}

	step("starting PostgreSQL and loading data")
	cl, err := pglocal.Start(ctx, pglocal.Options{Settings: map[string]string{"max_connections": "400"}})
	if err != nil {
		return err
	}
	defer cl.Stop()
	admin, err := pgconn.Connect(ctx, cl.ConnString("postgres"))
	if err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE pharma").ReadAll(); err != nil {
		return err
	}
	admin.Close(ctx)
	pc, err := pgconn.Connect(ctx, cl.ConnString("pharma"))
	if err != nil {
		return err
	}
	if err := demodata.Load(ctx, pc, *hcpRows, 1000); err != nil {
		return err
	}
	pc.Close(ctx)
	if out, err := exec.Command("pgbench", "-i", "-q", "-s", strconv.Itoa(*scale), cl.ConnString("pharma")).CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}

	step("starting sekisho")
	gwAddr, gwProc, err := startSekisho(ctx, bin, work, cl)
	if err != nil {
		return err
	}
	defer stopProc(gwProc)
	step("starting the plain Go relay")
	relayBin := filepath.Join(work, "relay")
	if out, err := exec.Command("go", "build", "-o", relayBin, "./bench/relay").CombinedOutput(); err != nil {
		return fmt.Errorf("build relay: %v\n%s", err, out)
	}
	rport, _ := pglocal.FreePort()
	relayAddr := fmt.Sprintf("127.0.0.1:%d", rport)
	relayProc := exec.Command(relayBin, relayAddr, fmt.Sprintf("%s:%d", cl.Host, cl.Port))
	if err := relayProc.Start(); err != nil {
		return err
	}
	defer stopProc(relayProc)
	if err := waitPort(relayAddr); err != nil {
		return err
	}
	step("starting pgbouncer")
	pbAddr, pbProc, err := startPgbouncer(work, cl)
	if err != nil {
		return err
	}
	defer stopProc(pbProc)

	direct := target{"direct", cl.ConnString("pharma")}
	gw := target{"sekisho", fmt.Sprintf("postgres://bench:%s@%s/pharma?sslmode=disable", benchPassword, gwAddr)}
	pb := target{"pgbouncer", fmt.Sprintf("postgres://%s:%s@%s/pharma?sslmode=disable", cl.User, cl.Password, pbAddr)}
	relay := target{"go-relay", fmt.Sprintf("postgres://%s:%s@%s/pharma?sslmode=disable", cl.User, cl.Password, relayAddr)}
	targets := []target{direct, gw, pb, relay}

	if *hold {
		for _, tg := range targets {
			fmt.Println(tg.name, tg.url)
		}
		fmt.Printf("credential postgres://person:%s@%s/pharma?sslmode=require\n", benchCredential, gwAddr)
		fmt.Println("pids: sekisho", gwProc.Process.Pid, "pgbouncer", pbProc.Process.Pid, "go-relay", relayProc.Process.Pid)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		return nil
	}

	r := &report{}
	fmt.Fprintf(&r.b, "Machine: %d CPUs (%s/%s), %s; PostgreSQL %s; pgbench runs of %d s; hcp %d rows.\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel(), serverVersion(ctx, direct.url), *seconds, *hcpRows)

	if *onlyConn || *onlyPol {
		*skipBulk, *skipTPS = true, true
	}
	masked := target{"sekisho masked role", fmt.Sprintf("postgres://masked:%s@%s/pharma?sslmode=disable", benchPassword, gwAddr)}
	if !*onlyConn {
		policyBench(r, direct, gw, masked, gwProc.Process.Pid)
	}
	if *onlyPol {
		fmt.Print(r.b.String())
		return nil
	}
	if !*skipBulk {
		step("bulk reads")
		r.line(fmt.Sprintf("### Bulk read of hcp with psql (wall time, best of %d)\n", *bulkRnds))
		r.line(fmt.Sprintf("%d rounds (-bulk-rounds); a round reads through every target once (SELECT, then COPY), starting with a different one each round.", *bulkRnds))
		r.line("Ratio columns: the best times' ratio, and (in brackets) the median of the ratios within each round, as for the TPS rows.\n")
		r.line("| target | SELECT * s | COPY TO STDOUT s | SELECT ratio to direct | COPY ratio to direct |")
		r.line("|---|---|---|---|---|")
		bulk := targets[:3]
		proxyPid := []int{0, gwProc.Process.Pid, pbProc.Process.Pid} // direct has none
		sel, cp := make([][]float64, len(bulk)), make([][]float64, len(bulk))
		// CPU seconds per SELECT * read: psql's own, and the proxy's.
		psqlCPU, proxyCPU := make([][]float64, len(bulk)), make([][]float64, len(bulk))
		for round := range *bulkRnds {
			for k := range bulk {
				i := (k + round) % len(bulk)
				before := cpuSeconds(proxyPid[i])
				wall, cpu := timePsqlCPU(bulk[i].url, "SELECT * FROM hcp")
				sel[i] = append(sel[i], wall)
				psqlCPU[i] = append(psqlCPU[i], cpu)
				proxyCPU[i] = append(proxyCPU[i], cpuSeconds(proxyPid[i])-before)
				cp[i] = append(cp[i], timePsql(bulk[i].url, "COPY hcp TO STDOUT"))
			}
		}
		// ratio: direct's time over the target's, best against best and
		// the median of the rounds' ratios.
		ratio := func(times [][]float64, i int) (float64, float64) {
			var rs []float64
			for round := range times[i] {
				rs = append(rs, times[0][round]/times[i][round])
			}
			return slices.Min(times[0]) / slices.Min(times[i]), median(rs)
		}
		for i, tg := range bulk {
			sb, sm := ratio(sel, i)
			cb, cm := ratio(cp, i)
			r.line(fmt.Sprintf("| %s | %.2f | %.2f | %.2f (%.2f) | %.2f (%.2f) |", tg.name, slices.Min(sel[i]), slices.Min(cp[i]), sb, sm, cb, cm))
		}
		r.line("\nCPU per SELECT * read, medians over the rounds (psql is the bound: a target whose reads are slow")
		r.line("while psql's CPU is not higher was slow on its own side):\n")
		r.line("| target | wall s | psql CPU s | proxy CPU s |")
		r.line("|---|---|---|---|")
		for i, tg := range bulk {
			proxy := "—"
			if proxyPid[i] != 0 {
				proxy = fmt.Sprintf("%.2f", median(proxyCPU[i]))
			}
			r.line(fmt.Sprintf("| %s | %.2f | %.2f | %s |", tg.name, median(sel[i]), median(psqlCPU[i]), proxy))
		}
		r.line(fmt.Sprintf("\nsekisho peak RSS (VmHWM) after the bulk reads: %.1f MiB\n", float64(procKB(gwProc.Process.Pid, "VmHWM"))/1024))
	}

	if !*skipTPS {
		step("pgbench -S")
		r.line("### pgbench -S (TPS; ratios to direct and to pgbouncer)\n")
		r.line("go-relay is bench/relay: io.Copy both ways, nothing else — the cost of Go's network stack alone.")
		r.line(fmt.Sprintf("Each row: %d rounds; a round runs every target once (%d s each), starting with a different one each round.", *rounds, *seconds))
		r.line("TPS columns are medians over the rounds; ratio columns are medians of the ratios within each round,")
		r.line("so a slow minute of this shared VM weighs on both sides of a ratio.\n")
		r.line("| mode | clients | direct | sekisho | pgbouncer | go-relay | sekisho/direct | sekisho/pgbouncer | pgbouncer/direct | sekisho/go-relay |")
		r.line("|---|---|---|---|---|---|---|---|---|---|")
		var spread []string
		row := func(label string, c int, args ...string) {
			tps, ratio, ratios := interleaved(targets, func(tg target) float64 { return pgbench(tg.url, args...) })
			r.line(fmt.Sprintf("| %s | %d | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f |", label, c, tps["direct"], tps["sekisho"], tps["pgbouncer"], tps["go-relay"],
				ratio("sekisho", "direct"), ratio("sekisho", "pgbouncer"), ratio("pgbouncer", "direct"), ratio("sekisho", "go-relay")))
			rs := ratios("sekisho", "pgbouncer")
			if len(rs) == 0 {
				return // every run failed (pgbench said why on stderr)
			}
			spread = append(spread, fmt.Sprintf("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %d of %d |", label, c,
				slices.Min(rs), quantile(rs, 0.25), median(rs), quantile(rs, 0.75), slices.Max(rs), countBelow(rs, 0.9), len(rs)))
		}
		for _, mode := range []string{"simple", "extended", "prepared"} {
			for _, c := range []int{1, 8, 32} {
				row(mode, c, "-S", "-M", mode, "-c", strconv.Itoa(c), "-j", strconv.Itoa(min(c, 2)))
			}
		}
		step("pgbench -S -C")
		row("simple, new connection per transaction (-C)", 8, "-S", "-C", "-c", "8", "-j", "2")
		r.line("\nsekisho/pgbouncer within each round: the spread behind the medians above (quartiles interpolated).\n")
		r.line("| mode | clients | min | lower quartile | median | upper quartile | max | rounds below 0.9 |")
		r.line("|---|---|---|---|---|---|---|---|")
		for _, l := range spread {
			r.line(l)
		}

		step("latency, 1 client, prepared")
		r.line("\n### pgbench -S -M prepared, 1 client: per-transaction latency (µs)\n")
		r.line(fmt.Sprintf("Medians over %d interleaved rounds of the per-run median and p99.\n", *rounds))
		r.line("| target | median | p99 | median minus direct |")
		r.line("|---|---|---|---|")
		meds, p99s := map[string][]float64{}, map[string][]float64{}
		for round := range *rounds {
			for i := range targets {
				tg := targets[(i+round)%len(targets)]
				med, p99 := pgbenchLatency(tg.url, work)
				meds[tg.name] = append(meds[tg.name], med)
				p99s[tg.name] = append(p99s[tg.name], p99)
			}
		}
		directMedian := median(meds["direct"])
		for _, tg := range targets {
			med := median(meds[tg.name])
			r.line(fmt.Sprintf("| %s | %.0f | %.0f | %+.0f |", tg.name, med, median(p99s[tg.name]), med-directMedian))
		}
	}

	step("new connections with TLS")
	r.line("\n### New connections with TLS and a password check (pgbench -S -C, 8 clients, sslmode=require)\n")
	r.line("Each transaction opens a new connection: TLS handshake and SCRAM, plus for sekisho the account, role,")
	r.line("lockout and gateway-lock checks, and an upstream connection (a kept one, reset with DISCARD ALL, when one is idle).")
	r.line("The password user's SCRAM has PostgreSQL's 4096 PBKDF2 iterations, which pgbench (libpq) computes on every")
	r.line("connection; an access credential (from sekisho login, 256 random bits) has 16. CPU columns: milliseconds of")
	r.line("CPU per connection spent by pgbench itself and by the server side (PostgreSQL, or sekisho + PostgreSQL).\n")
	r.line("| target | connections/s | pgbench CPU ms/conn | server-side CPU ms/conn |")
	r.line("|---|---|---|---|")
	credURL := fmt.Sprintf("postgres://person:%s@%s/pharma?sslmode=require", benchCredential, gwAddr)
	for _, tg := range []struct {
		name, url string
		pids      []int
	}{
		{"direct (TLS, password)", strings.Replace(direct.url, "sslmode=disable", "sslmode=require", 1), []int{cl.PID()}},
		{"sekisho (TLS, password)", strings.Replace(gw.url, "sslmode=disable", "sslmode=require", 1), []int{gwProc.Process.Pid, cl.PID()}},
		{"sekisho (TLS, access credential)", credURL, []int{gwProc.Process.Pid, cl.PID()}},
	} {
		tps, client, server := pgbenchConnect(tg.url, tg.pids)
		r.line(fmt.Sprintf("| %s | %.0f | %.2f | %.2f |", tg.name, tps, client, server))
	}
	if err := suspendBench(ctx, r, bin, filepath.Join(work, "gw", "sekisho.yaml"), gwAddr, cl); err != nil {
		return err
	}
	if *onlyConn {
		fmt.Print(r.b.String())
		return nil
	}

	step("proxy CPU per transaction")
	r.line(fmt.Sprintf("\n### Proxy CPU per transaction (pgbench -S -M prepared, 8 clients, 20,000 transactions per run, %d interleaved rounds)\n", *rounds))
	r.line("Medians over the rounds. Context switches: voluntary and involuntary, summed over the proxy's threads")
	r.line("(a thread that sleeps in a wait and is woken counts one; so does one preempted by a process it woke).\n")
	r.line("| proxy | user µs/tx | system µs/tx | total µs/tx | total, min–max over the rounds | context switches/tx |")
	r.line("|---|---|---|---|---|---|")
	type proxy struct {
		name string
		url  string
		pid  int
	}
	proxies := []proxy{{"sekisho", gw.url, gwProc.Process.Pid}, {"pgbouncer", pb.url, pbProc.Process.Pid}, {"go-relay", relay.url, relayProc.Process.Pid}}
	type cpuRun struct{ user, sys, switches []float64 }
	cpu := map[string]*cpuRun{}
	for round := range *rounds {
		for i := range proxies {
			p := proxies[(i+round)%len(proxies)]
			u0, s0 := procCPU(p.pid)
			c0 := procSwitches(p.pid)
			out, err := exec.Command("pgbench", "-S", "-M", "prepared", "-c", "8", "-j", "2", "-t", "2500", "-n", p.url).CombinedOutput()
			if err != nil {
				return fmt.Errorf("pgbench for CPU: %v\n%s", err, out)
			}
			u1, s1 := procCPU(p.pid)
			c1 := procSwitches(p.pid)
			if cpu[p.name] == nil {
				cpu[p.name] = &cpuRun{}
			}
			c := cpu[p.name]
			c.user = append(c.user, float64((u1-u0).Microseconds())/20000)
			c.sys = append(c.sys, float64((s1-s0).Microseconds())/20000)
			c.switches = append(c.switches, float64(c1-c0)/20000)
		}
	}
	for _, p := range proxies {
		c := cpu[p.name]
		total := make([]float64, len(c.user))
		for i := range total {
			total[i] = c.user[i] + c.sys[i]
		}
		r.line(fmt.Sprintf("| %s | %.1f | %.1f | %.1f | %.1f–%.1f | %.2f |", p.name, median(c.user), median(c.sys), median(total),
			slices.Min(total), slices.Max(total), median(c.switches)))
	}

	step("200 idle sessions")
	rss, err := idleSessions(ctx, gw.url, gwProc.Process.Pid, 200)
	if err != nil {
		return err
	}
	r.line(fmt.Sprintf("\n### 200 idle sessions\n\nsekisho RSS with 200 idle sessions open: %.1f MiB; peak RSS over the whole run (VmHWM): %.1f MiB\n",
		float64(rss)/1024, float64(procKB(gwProc.Process.Pid, "VmHWM"))/1024))
	fmt.Print(r.b.String())
	return os.WriteFile(filepath.Join(*outDir, "report.md"), []byte(r.b.String()), 0o644)
}

type report struct{ b strings.Builder }

func (r *report) line(s string) { r.b.WriteString(s + "\n") }

// typicalSelect is a 200-character application query for the analysis
// timing.
const typicalSelect = `SELECT h.id, h.name, h.email, h.institution, c.diagnosis_code, c.stage FROM public.hcp h JOIN public.cases c ON c.institution = h.institution WHERE h.department = $1 AND c.start_date >= $2 ORDER BY h.id LIMIT 50`

// policyBench measures the data policy: the analysis alone, pgbench
// through an unrestricted and a masking role, and a masked bulk read.
func policyBench(r *report, direct, gw, masked target, gwPid int) {
	step("data policy")
	r.line("### Data policy\n")
	cat := sqlscope.NewSnapshot([]*sqlscope.Relation{
		{OID: 1, Schema: "public", Name: "hcp", Kind: 'r', Columns: []string{"id", "name", "name_kana", "sex", "birth_date", "email", "institution", "institution_address", "title", "job_type", "department", "updated_at"}},
		{OID: 2, Schema: "public", Name: "cases", Kind: 'r', Columns: []string{"id", "registry", "diagnosis_code", "stage", "treatment", "institution", "start_date"}},
	}, nil)
	var ds []float64
	for range 3000 {
		t0 := time.Now()
		if _, err := sqlscope.Analyze(typicalSelect, cat); err != nil {
			panic(err)
		}
		ds = append(ds, float64(time.Since(t0).Microseconds()))
	}
	sort.Float64s(ds)
	r.line(fmt.Sprintf("Uncached analysis (parse with libpg_query + scope analysis) of a %d-character SELECT: median %.0f µs, p99 %.0f µs (3000 runs, in process).\n",
		len(typicalSelect), ds[len(ds)/2], ds[len(ds)*99/100]))
	r.line("pgbench -S through the gateway as an unrestricted role (every statement still parsed and decided, decisions cached) and as a role that masks hcp columns:\n")
	r.line("| mode | clients | unrestricted TPS | masking role TPS | masking/unrestricted |")
	r.line("|---|---|---|---|---|")
	for _, mode := range []string{"simple", "prepared"} {
		for _, c := range []int{1, 8} {
			a := pgbench(gw.url, "-S", "-M", mode, "-c", strconv.Itoa(c), "-j", strconv.Itoa(min(c, 2)))
			b := pgbench(masked.url, "-S", "-M", mode, "-c", strconv.Itoa(c), "-j", strconv.Itoa(min(c, 2)))
			r.line(fmt.Sprintf("| %s | %d | %.0f | %.0f | %.2f |", mode, c, a, b, b/a))
		}
	}
	r.line("\nGateway CPU per transaction (the steadier measure on this VM; pgbench -S, 8 clients, 20,000 transactions):\n")
	r.line("| mode | unrestricted µs/tx | masking role µs/tx | masking/unrestricted |")
	r.line("|---|---|---|---|")
	for _, mode := range []string{"simple", "prepared"} {
		cpu := func(url string) float64 {
			u0, s0 := procCPU(gwPid)
			if out, err := exec.Command("pgbench", "-S", "-M", mode, "-c", "8", "-j", "2", "-t", "2500", "-n", url).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "pgbench: %v\n%s\n", err, out)
				return 0
			}
			u1, s1 := procCPU(gwPid)
			return float64((u1 - u0 + s1 - s0).Microseconds()) / 20000
		}
		a, b := cpu(gw.url), cpu(masked.url)
		r.line(fmt.Sprintf("| %s | %.1f | %.1f | %.2f |", mode, a, b, b/a))
	}
	r.line("\nBulk read of all of hcp (psql, SELECT *, best of 3): the masking role gets names pseudonymised, e-mail partial, birth dates year-only, addresses redacted.\n")
	r.line("| target | seconds | ratio to direct |")
	r.line("|---|---|---|")
	var base float64
	for _, tg := range []target{direct, gw, masked} {
		sec := best(3, func() float64 { return timePsql(tg.url, "SELECT * FROM hcp") })
		if base == 0 {
			base = sec
		}
		r.line(fmt.Sprintf("| %s | %.2f | %.2f |", tg.name, sec, base/sec))
	}
	r.line(fmt.Sprintf("\nsekisho peak RSS (VmHWM) after the masked read: %.1f MiB\n", float64(procKB(gwPid, "VmHWM"))/1024))
}

func step(s string) { fmt.Fprintf(os.Stderr, "bench: %s (%s)\n", s, time.Now().Format("15:04:05")) }

var benchPassword = rand.Text()

// benchCredential is the access credential of the MFA user "person".
var benchCredential string

func startSekisho(ctx context.Context, bin, work string, cl *pglocal.Cluster) (string, *exec.Cmd, error) {
	dir := filepath.Join(work, "gw")
	os.MkdirAll(dir, 0o700)
	if err := os.WriteFile(filepath.Join(dir, "upstream.pw"), []byte(cl.Password), 0o600); err != nil {
		return "", nil, err
	}
	port, _ := pglocal.FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`state_dir: state
listen:
  address: %s
  allow_plaintext: true   # TLS is still offered; the connection test uses it
limits:
  max_sessions: 1000
  upstream_idle_max: 300  # as pgbouncer's default_pool_size: both keep every backend of a 32-client run for the next
roles:
  bench: {networks: [127.0.0.1], databases: [pharma], statements: [all], read: ["*"], write: ["*"], functions: ["*"], features: [all],
          protected: {name: allow, date_of_birth: allow, email: allow, address: allow, sex: allow, institution: allow}}
  people:  # humans: MFA at the login API, then short-lived access credentials
    mfa: true
    networks: [127.0.0.1]
    databases: [pharma]
    statements: [all]
    read: ["*"]
    protected: {name: allow, date_of_birth: allow, email: allow, address: allow, sex: allow, institution: allow}
  masked:
    networks: [127.0.0.1]
    databases: [pharma]
    statements: [read, session, transaction]
    read: ["*"]
    protected: {name: {mask: pseudonym}, date_of_birth: {mask: year_only}, email: {mask: partial_email},
                address: {mask: redact}, sex: allow, institution: allow}
subjects:
  - database: pharma
    table: public.hcp
    key: id
    columns: {name: name, name_kana: name, birth_date: date_of_birth, sex: sex, email: email,
              institution: institution, institution_address: address}
upstreams:
  - database: pharma
    host: %s
    port: %d
    user: %s
    password_file: upstream.pw
    tls: disable
`, addr, cl.Host, cl.Port, cl.User)
	cfgPath := filepath.Join(dir, "sekisho.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return "", nil, err
	}
	st, err := store.OpenSQLite(filepath.Join(dir, "state"))
	if err != nil {
		return "", nil, err
	}
	v, _ := identity.NewVerifier(benchPassword)
	err = st.AddUser(ctx, store.User{Name: "bench", Role: "bench", Verifier: v, Expires: time.Now().Add(24 * time.Hour), Created: time.Now(), CreatedBy: "bench"})
	if err == nil {
		err = st.AddUser(ctx, store.User{Name: "masked", Role: "masked", Verifier: v, Expires: time.Now().Add(24 * time.Hour), Created: time.Now(), CreatedBy: "bench"})
	}
	if err == nil {
		err = st.AddUser(ctx, store.User{Name: "suspendme", Role: "bench", Verifier: v, Expires: time.Now().Add(24 * time.Hour), Created: time.Now(), CreatedBy: "bench"})
	}
	if err == nil {
		err = st.AddUser(ctx, store.User{Name: "person", Role: "people", Verifier: v, Expires: time.Now().Add(24 * time.Hour), Created: time.Now(), CreatedBy: "bench"})
	}
	if err == nil {
		// An access credential as sekisho login issues one (the bench
		// skips the password + TOTP exchange that precedes it).
		var key []byte
		key, err = st.Secret(ctx, "credential-salt-key", func() ([]byte, error) { return []byte(rand.Text()), nil })
		if err == nil {
			var cv identity.Verifier
			benchCredential, cv, err = identity.NewAccessCredential(identity.CredentialSalt(key, "person"))
			if err == nil {
				err = st.AddCredential(ctx, store.Credential{ID: "bench", User: "person", StoredKey: cv.StoredKey, ServerKey: cv.ServerKey,
					Issued: time.Now(), Expires: time.Now().Add(8 * time.Hour), Source: "127.0.0.1"})
			}
		}
	}
	st.Close()
	if err != nil {
		return "", nil, err
	}
	logf, _ := os.Create(filepath.Join(*outDir, "sekisho.log"))
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	return addr, cmd, waitPort(addr)
}

func startPgbouncer(work string, cl *pglocal.Cluster) (string, *exec.Cmd, error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/pgbouncer"); serr == nil {
			bin = "/usr/sbin/pgbouncer"
		} else {
			return "", nil, fmt.Errorf("pgbouncer not found: apt-get install pgbouncer")
		}
	}
	dir := filepath.Join(work, "pgbouncer")
	os.MkdirAll(dir, 0o755)
	port, _ := pglocal.FreePort()
	ini := fmt.Sprintf(`[databases]
pharma = host=%s port=%d dbname=pharma
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s/userlist.txt
pool_mode = session
max_client_conn = 1000
default_pool_size = 300
logfile = %s/pgbouncer.log
`, cl.Host, cl.Port, port, dir, dir)
	os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o644)
	os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(fmt.Sprintf("%q %q\n", cl.User, cl.Password)), 0o644)
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	if os.Geteuid() == 0 {
		// pgbouncer refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return "", nil, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, gid) })
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return addr, cmd, waitPort(addr)
}

func waitPort(addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

func stopProc(c *exec.Cmd) {
	if c == nil || c.Process == nil {
		return
	}
	c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.Process.Kill()
	}
}

// interleaved runs measure for every target, *rounds times, rotating which
// target goes first, and returns each target's median, a function for
// the median over rounds of the ratio between two targets in one round,
// and one for those ratios themselves.
func interleaved(targets []target, measure func(target) float64) (map[string]float64, func(a, b string) float64, func(a, b string) []float64) {
	runs := map[string][]float64{}
	for round := range *rounds {
		for i := range targets {
			tg := targets[(i+round)%len(targets)]
			runs[tg.name] = append(runs[tg.name], measure(tg))
		}
	}
	med := map[string]float64{}
	for k, v := range runs {
		med[k] = median(v)
	}
	ratios := func(a, b string) []float64 {
		var rs []float64
		for i := range runs[a] {
			if i < len(runs[b]) && runs[b][i] > 0 {
				rs = append(rs, runs[a][i]/runs[b][i])
			}
		}
		return rs
	}
	ratio := func(a, b string) float64 { return median(ratios(a, b)) }
	return med, ratio, ratios
}

// quantile is the q-quantile of v, interpolated between order statistics
// (q 0.5 is the median).
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	pos := q * float64(len(s)-1)
	i := int(pos)
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (pos-float64(i))*(s[i+1]-s[i])
}

func countBelow(v []float64, limit float64) int {
	n := 0
	for _, x := range v {
		if x < limit {
			n++
		}
	}
	return n
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func pgbench(url string, args ...string) float64 {
	args = append(args, "-n", "-T", strconv.Itoa(*seconds), url)
	out, err := exec.Command("pgbench", args...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgbench %v: %v\n%s\n", args[:len(args)-1], err, out)
		return 0
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "tps = ") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[2], 64)
			return v
		}
	}
	return 0
}

// suspendBench measures how long 'sekisho user suspend' takes to end a
// session that is running a long statement: from starting the command
// to the client receiving its 57P01.
func suspendBench(ctx context.Context, r *report, bin, cfgPath, gwAddr string, cl *pglocal.Cluster) error {
	step("suspension to session end")
	direct, err := pgconn.Connect(ctx, cl.ConnString("pharma"))
	if err != nil {
		return err
	}
	defer direct.Close(ctx)
	url := fmt.Sprintf("postgres://suspendme:%s@%s/pharma?sslmode=require", benchPassword, gwAddr)
	var cmdMS, endMS []float64
	for i := range 5 {
		conn, err := pgconn.Connect(ctx, url)
		if err != nil {
			return fmt.Errorf("suspend bench connect: %w", err)
		}
		tag := fmt.Sprintf("SELECT pg_sleep(30) AS suspend_bench_%d", i)
		ended := make(chan time.Time, 1)
		go func() {
			_, _ = conn.Exec(ctx, tag).ReadAll()
			ended <- time.Now()
		}()
		for deadline := time.Now().Add(10 * time.Second); ; {
			res, err := direct.Exec(ctx, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE query = '%s'", tag)).ReadAll()
			if err == nil && string(res[0].Rows[0][0]) == "1" {
				break
			}
			if time.Now().After(deadline) {
				return errors.New("suspend bench: the statement never started upstream")
			}
			time.Sleep(10 * time.Millisecond)
		}
		t0 := time.Now()
		if out, err := exec.Command(bin, "user", "suspend", "suspendme", "--reason", "bench", "--config", cfgPath).CombinedOutput(); err != nil {
			return fmt.Errorf("suspend: %v\n%s", err, out)
		}
		t1 := time.Now()
		select {
		case t2 := <-ended:
			cmdMS = append(cmdMS, float64(t1.Sub(t0).Microseconds())/1000)
			endMS = append(endMS, float64(t2.Sub(t0).Microseconds())/1000)
		case <-time.After(10 * time.Second):
			return errors.New("suspend bench: the session did not end within 10 s")
		}
		conn.Close(ctx)
		if out, err := exec.Command(bin, "user", "resume", "suspendme", "--config", cfgPath).CombinedOutput(); err != nil {
			return fmt.Errorf("resume: %v\n%s", err, out)
		}
	}
	sort.Float64s(cmdMS)
	sort.Float64s(endMS)
	r.line("\n### Suspension to session end (5 runs, a session running pg_sleep(30) over TLS)\n")
	r.line("From starting `sekisho user suspend` (a new process: config, admin socket, store) to the client receiving 57P01.\n")
	r.line("| | median ms | max ms |")
	r.line("|---|---|---|")
	r.line(fmt.Sprintf("| suspend command returns | %.1f | %.1f |", cmdMS[2], cmdMS[4]))
	r.line(fmt.Sprintf("| client's session ended | %.1f | %.1f |", endMS[2], endMS[4]))
	return nil
}

// pgbenchConnect runs pgbench -S -C (a new connection per transaction)
// and returns connections per second and the CPU milliseconds per
// connection of pgbench and of the server-side processes (with all
// their children: PostgreSQL's backends are children of the postmaster).
func pgbenchConnect(url string, pids []int) (float64, float64, float64) {
	var before time.Duration
	for _, p := range pids {
		before += treeCPU(p)
	}
	cmd := exec.Command("pgbench", "-S", "-C", "-c", "8", "-j", "2", "-n", "-T", strconv.Itoa(*seconds), url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgbench -C: %v\n%s\n", err, out)
		return 0, 0, 0
	}
	var after time.Duration
	for _, p := range pids {
		after += treeCPU(p)
	}
	var tps float64
	var n float64
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if strings.HasPrefix(l, "tps = ") {
			tps, _ = strconv.ParseFloat(f[2], 64)
		}
		if strings.HasPrefix(l, "number of transactions actually processed:") {
			n, _ = strconv.ParseFloat(f[len(f)-1], 64)
		}
	}
	n = math.Max(n, 1)
	ps := cmd.ProcessState
	client := (ps.UserTime() + ps.SystemTime()).Seconds() * 1000 / n
	return tps, client, (after - before).Seconds() * 1000 / n
}

// treeCPU is the CPU time of a process and its children, living (from
// /proc) and ended (cutime/cstime).
func treeCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	tick := time.Second / 100
	var t time.Duration
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseInt(f[i], 10, 64)
		t += time.Duration(v) * tick
	}
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, k := range strings.Fields(string(kids)) {
		if c, err := strconv.Atoi(k); err == nil {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
			if err != nil {
				continue
			}
			f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
			for _, i := range []int{11, 12} {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				t += time.Duration(v) * tick
			}
		}
	}
	return t
}

// pgbenchLatency runs one client in prepared mode with a transaction log
// and returns the median and 99th percentile latency in microseconds.
func pgbenchLatency(url, work string) (float64, float64) {
	dir, _ := os.MkdirTemp(work, "lat-")
	prefix := filepath.Join(dir, "log")
	cmd := exec.Command("pgbench", "-S", "-M", "prepared", "-c", "1", "-n", "-T", strconv.Itoa(*seconds), "-l", "--log-prefix", prefix, url)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "pgbench latency: %v\n%s\n", err, out)
		return 0, 0
	}
	files, _ := filepath.Glob(prefix + "*")
	var lats []float64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 3 {
				v, _ := strconv.ParseFloat(fs[2], 64)
				lats = append(lats, v)
			}
		}
		fh.Close()
	}
	if len(lats) == 0 {
		return 0, 0
	}
	sort.Float64s(lats)
	return lats[len(lats)/2], lats[int(math.Min(float64(len(lats)-1), float64(len(lats))*0.99))]
}

func timePsql(url, sql string) float64 {
	wall, _ := timePsqlCPU(url, sql)
	return wall
}

// timePsqlCPU runs sql with psql, output thrown away, and returns the wall
// time and psql's own CPU time in seconds (NaN for both if it failed).
func timePsqlCPU(url, sql string) (float64, float64) {
	start := time.Now()
	cmd := exec.Command("psql", url, "-X", "-q", "-At", "-c", sql)
	devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	defer devnull.Close()
	cmd.Stdout = devnull
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "psql %q: %v\n%s\n", sql, err, stderr.String())
		return math.NaN(), math.NaN()
	}
	wall := time.Since(start).Seconds()
	return wall, (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
}

// cpuSeconds is a process's CPU time so far (0 for pid 0).
func cpuSeconds(pid int) float64 {
	if pid == 0 {
		return 0
	}
	u, s := procCPU(pid)
	return (u + s).Seconds()
}

func best(n int, f func() float64) float64 {
	b := math.Inf(1)
	for i := 0; i < n; i++ {
		b = math.Min(b, f())
	}
	return b
}

func procKB(pid int, field string) int64 {
	return procField(fmt.Sprintf("/proc/%d/status", pid), field)
}

// procField reads a number field of a /proc status file ("VmRSS" in kB,
// "voluntary_ctxt_switches" a count).
func procField(path, field string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

func idleSessions(ctx context.Context, url string, pid, n int) (int64, error) {
	var conns []*pgconn.PgConn
	defer func() {
		for _, c := range conns {
			c.Close(ctx)
		}
	}()
	for i := 0; i < n; i++ {
		c, err := pgconn.Connect(ctx, url)
		if err != nil {
			return 0, fmt.Errorf("idle session %d: %w", i, err)
		}
		if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			return 0, err
		}
		conns = append(conns, c)
	}
	time.Sleep(time.Second)
	return procKB(pid, "VmRSS"), nil
}

// procSwitches returns the context switches of a process's threads so
// far, voluntary and involuntary (threads that exited are not counted).
func procSwitches(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	var n int64
	for _, t := range tasks {
		n += procField(filepath.Join(t, "status"), "voluntary_ctxt_switches")
		n += procField(filepath.Join(t, "status"), "nonvoluntary_ctxt_switches")
	}
	return n
}

// procCPU returns a process's user and system CPU time so far.
func procCPU(pid int) (user, sys time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	tick := time.Second / 100 // USER_HZ
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u) * tick, time.Duration(s) * tick
}

func serverVersion(ctx context.Context, url string) string {
	c, err := pgconn.Connect(ctx, url)
	if err != nil {
		return "?"
	}
	defer c.Close(ctx)
	return c.ParameterStatus("server_version")
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
		}
	}
	return "unknown CPU"
}
