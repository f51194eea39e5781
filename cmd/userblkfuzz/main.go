// Command userblkfuzz attacks userblk.ko's control device the way a hostile or unlucky
// daemon would, inside a guest, and checks the invariants a correct driver keeps:
//
//   - one control fd makes at most one disk, and no disk outlives its fd;
//   - a request is completed once, never before GET_REQUEST handed it out, and never
//     handed out again after its completion;
//   - every bio ends (within the disk's io_timeout and a margin), data reads back as
//     written, and the kernel never copies through a bad pointer;
//   - rmmod fails while a disk exists; the bug modes need the opt-in.
//
// Rounds are drawn from -seed until -duration is up: API abuse on fresh fds (bad
// lengths and pointers, calls out of order, CREATE races on one fd, unknown flags), and
// serving rounds where a child process serves a disk adversarially (stale, duplicate,
// future xids, bad buffers, a userfaultfd-stalled buffer while another thread races
// COMPLETE and SHUTDOWN against the copy) while this process does verified O_DIRECT I/O,
// multi-block (so multi-segment bios, failing in the middle), and kills, shuts down,
// stops or closes the child's fd under it at a random point. Serving rounds come in
// kinds (see child): some outlast io_timeout with requests handed back for ever
// (protnone) or held unanswered (stall), so the timeout meets BUSY and SENT requests,
// and most rounds set the module's busy_delay_us so COMPLETE, close and the timeout
// race copies in progress. The module counts those interleavings
// (/sys/class/misc/userblk-ctl/events); the report carries them (interleavings).
//
// -scenario stall-after-get|protnone-loop runs one hostile daemon instead, for -hold:
// stopped (SIGSTOP) right after a GET_REQUEST, or looping GET_REQUEST with a PROT_NONE
// buffer; every I/O must fail within io_timeout + 2 s, and the disk must go with the
// daemon.
//
// Crashes, oopses and hung tasks are the lab's to catch on the console; the invariants
// are counted in the stress-report JSON (-json) as mismatches.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/kmodlab/kmodlab/daemon/uapi"
	"github.com/kmodlab/kmodlab/stressreport"
	"golang.org/x/sys/unix"
)

type fuzzer struct {
	ctl      string
	module   string
	seed     int64
	mode     uint32
	modeName string
	timeout  uint32 // the disks' io_timeout, seconds
	start    time.Time
	ops      atomic.Int64
	reads    atomic.Int64
	writes   atomic.Int64
	ioErrs   atomic.Int64
	longest  atomic.Int64 // the longest I/O, ns

	busyDelay int // -busy-delay: the most busy_delay_us a round sets; 0: never
	events0   map[string]int64

	mu         sync.Mutex
	violations []stressreport.Violation
	notes      []string
	jsonPath   string
	stopped    bool // the module went away: nothing more to fuzz
}

func (f *fuzzer) violate(inv, detail string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintf(os.Stderr, "userblkfuzz: VIOLATION %s: %s\n", inv, detail)
	if len(f.violations) < 1000 {
		f.violations = append(f.violations, stressreport.Violation{Invariant: inv, Detail: detail, Seed: f.seed,
			ElapsedMS: time.Since(f.start).Milliseconds()})
	}
}

func (f *fuzzer) note(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.notes {
		if n == s {
			return
		}
	}
	f.notes = append(f.notes, s)
	fmt.Fprintln(os.Stderr, "userblkfuzz:", s)
}

func main() {
	f := &fuzzer{start: time.Now()}
	var (
		duration = flag.Duration("duration", 15*time.Second, "how long to fuzz")
		serve    = flag.Bool("serve-child", false, "internal: be the serving child")
		kind     = flag.String("kind", kindAdversarial, "internal: the serving child's kind")
		size     = flag.Uint64("size", 8<<20, "disk size")
		scenario = flag.String("scenario", "", "run one hostile daemon instead of fuzzing: stall-after-get or protnone-loop")
		hold     = flag.Duration("hold", 0, "-scenario: how long the daemon stays hostile (default 2 x io_timeout + 1 s)")
		minInter = flag.Int64("min-interleavings", 0, "report (errors, stderr) each interleaving reached fewer times than this")
	)
	flag.IntVar(&f.busyDelay, "busy-delay", 6000, "the most busy_delay_us a round sets (the module holds copies open that long); 0: leave it alone")
	flag.StringVar(&f.ctl, "ctl", "/dev/"+uapi.CtlName, "control device")
	flag.StringVar(&f.module, "module", "userblk", "module name, for rmmod attempts (empty: none)")
	flag.Int64Var(&f.seed, "seed", 1, "random seed: the same seed draws the same rounds")
	flag.StringVar(&f.modeName, "mode", "default", "map mode of the disks it serves")
	timeout := flag.Uint("io-timeout", 3, "io_timeout of the disks it serves, seconds")
	flag.StringVar(&f.jsonPath, "json", "", "write the stress report here")
	probeUID := flag.Int("probe-open-uid", -1, "only try to open -ctl as this (non-root) uid, print the result and exit 0 if refused")
	probe := flag.Bool("probe-open", false, "internal: open -ctl and exit")
	flag.Parse()
	if *probe {
		fd, err := unix.Open(f.ctl, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			fmt.Printf("open %s as uid %d: %v\n", f.ctl, os.Getuid(), err)
			os.Exit(0)
		}
		unix.Close(fd)
		fmt.Printf("open %s as uid %d: succeeded\n", f.ctl, os.Getuid())
		os.Exit(1)
	}
	if *probeUID >= 0 {
		exe, _ := os.Executable()
		cmd := exec.Command(exe, "-probe-open", "-ctl", f.ctl)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(*probeUID), Gid: uint32(*probeUID)}}
		if err := cmd.Run(); err != nil {
			fmt.Println("a non-root opener was NOT refused:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	m, ok := uapi.ModeNames[f.modeName]
	if !ok {
		fmt.Fprintf(os.Stderr, "userblkfuzz: -mode %q unknown\n", f.modeName)
		os.Exit(2)
	}
	f.mode, f.timeout = m, uint32(*timeout)
	if *serve {
		if !childKinds[*kind] {
			fmt.Fprintf(os.Stderr, "userblkfuzz: -kind %q unknown\n", *kind)
			os.Exit(2)
		}
		os.Exit(runChild(f, f.mode, *size, f.timeout, *kind))
	}
	f.events0 = readEvents()
	if f.events0 == nil {
		f.note("the module counts no events (" + uapi.EventsDir + " missing): interleavings unknown")
	}
	defer setBusyDelay(0)
	if *scenario != "" {
		if *scenario != kindStallGet && *scenario != kindProtLoop {
			fmt.Fprintf(os.Stderr, "userblkfuzz: -scenario %q: want %s or %s\n", *scenario, kindStallGet, kindProtLoop)
			os.Exit(2)
		}
		if *hold == 0 {
			*hold = time.Duration(f.timeout)*2*time.Second + time.Second
		}
		f.scenario(*scenario, *size, *hold)
	} else {
		f.fuzz(*size, *duration)
	}
	if err := f.report(*minInter); err != nil {
		fmt.Fprintln(os.Stderr, "userblkfuzz:", err)
		os.Exit(2)
	}
	// Like blkstress: with -json the report carries the verdict and the step succeeds.
	if len(f.violations) > 0 && f.jsonPath == "" {
		os.Exit(1)
	}
}

// Serving round kinds, drawn by fuzz in these proportions (out of 10), after api rounds
// (2 of 10).
var roundKinds = []struct {
	kind   string
	weight int
}{{kindAdversarial, 2}, {kindRace, 2}, {kindProtnone, 2}, {kindStall, 2}}

// fuzz draws rounds from the seed until duration is up.
func (f *fuzzer) fuzz(size uint64, duration time.Duration) {
	rng := rand.New(rand.NewSource(f.seed))
	deadline := time.Now().Add(duration)
	rounds := map[string]int{}
	for time.Now().Before(deadline) && !f.isStopped() {
		seed := rng.Int63()
		n := rng.Intn(10)
		if n < 2 {
			rounds["api"]++
			f.apiRound(rand.New(rand.NewSource(seed)))
			continue
		}
		n -= 2
		kind := kindAdversarial
		for _, k := range roundKinds {
			if n < k.weight {
				kind = k.kind
				break
			}
			n -= k.weight
		}
		rounds[kind]++
		f.serveRound(rand.New(rand.NewSource(seed)), kind, size, time.Until(deadline))
	}
	fmt.Fprintf(os.Stderr, "userblkfuzz: rounds %v, %d ioctls, %d verified reads, %d writes, %d I/O errors (injected), %d violations\n",
		rounds, f.ops.Load(), f.reads.Load(), f.writes.Load(), f.ioErrs.Load(), len(f.violations))
}

// readEvents reads the module's event counters; nil if it has none.
func readEvents() map[string]int64 {
	out := map[string]int64{}
	for _, n := range uapi.EventNames {
		b, err := os.ReadFile(filepath.Join(uapi.EventsDir, n))
		if err != nil {
			return nil
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil
		}
		out[n] = v
	}
	return out
}

// interleavings is what the module counted since the fuzzer started.
func (f *fuzzer) interleavings() map[string]int64 {
	now := readEvents()
	if now == nil || f.events0 == nil {
		return nil
	}
	out := map[string]int64{}
	for n, v := range now {
		out[n] = v - f.events0[n]
	}
	return out
}

const busyDelayParam = "/sys/module/userblk/parameters/busy_delay_us"

// setBusyDelay sets the module's busy_delay_us (testing only), if it has one.
func setBusyDelay(us int) {
	os.WriteFile(busyDelayParam, []byte(strconv.Itoa(us)), 0o644)
}

func (f *fuzzer) isStopped() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stopped
}

// report prints the interleavings reached (noting those reached fewer than min times)
// and writes the stress report.
func (f *fuzzer) report(min int64) error {
	inter := f.interleavings()
	if inter != nil {
		var parts []string
		for _, n := range uapi.EventNames {
			parts = append(parts, fmt.Sprintf("%s=%d", n, inter[n]))
		}
		fmt.Fprintf(os.Stderr, "userblkfuzz: interleavings: %s\n", strings.Join(parts, " "))
		if min > 0 {
			r := stressreport.Report{Interleavings: inter}
			if miss := r.Unreached(stressreport.FuzzInterleavings, min); len(miss) > 0 {
				f.note(fmt.Sprintf("interleavings reached fewer than %d times: %s", min, strings.Join(miss, ", ")))
			}
		}
	}
	if f.jsonPath == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := stressreport.Report{Tool: "userblkfuzz", Mode: f.modeName, Device: f.ctl, Seed: f.seed,
		Seconds: time.Since(f.start).Seconds(), Reads: f.reads.Load(), Writes: f.writes.Load(),
		Ops: f.ops.Load(), Mismatches: len(f.violations), FirstMS: -1, Errors: f.notes, Interleavings: inter}
	// io_errors stays 0: every I/O error here is one the fuzzer caused on purpose (a
	// failed COMPLETE, a request left to time out, the server killed or shut down), and
	// the lab reads io_errors as data that should have been verified and was not. The
	// count is on stderr; a bio that never ends is a violation of its own.
	if len(f.violations) > 0 {
		r.FirstMS = f.violations[0].ElapsedMS
		d, err := json.Marshal(f.violations)
		if err != nil {
			return err
		}
		r.Details = d
	}
	return r.Write(f.jsonPath)
}

// disks lists the userblk disks that exist now.
func disks() map[string]bool {
	m, _ := filepath.Glob("/sys/block/userblk*")
	out := map[string]bool{}
	for _, p := range m {
		out[filepath.Base(p)] = true
	}
	return out
}

func unsafeAllowed() bool {
	b, err := os.ReadFile("/sys/module/userblk/parameters/unsafe_modes")
	return err == nil && strings.TrimSpace(string(b)) == "Y"
}

// apiRound abuses fresh control fds: calls before CREATE, bad CREATEs, CREATE racing
// CREATE on one fd, bad flags and xids on an unserved disk, SHUTDOWN; then checks no
// disk outlives the fds.
func (f *fuzzer) apiRound(rng *rand.Rand) {
	before := disks()
	bad, err := newBadPointers()
	if err != nil {
		f.note("bad pointers: " + err.Error())
		return
	}
	defer bad.free()
	fd, err := unix.Open(f.ctl, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		f.note(fmt.Sprintf("open %s: %v", f.ctl, err))
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
		return
	}
	// Before CREATE nothing but CREATE works.
	scratch := getScratch()
	defer putScratch(scratch)
	for _, c := range []struct {
		req uintptr
		arg uintptr
	}{{uapi.IocGetRequest, uintptr(unsafe.Pointer(&scratch[0]))}, {uapi.IocComplete, uintptr(unsafe.Pointer(&scratch[0]))},
		{uapi.IocShutdown, 0}, {uapi.IocGetRequest, bad.kernel}} {
		if err := f.ioctl(fd, c.req, c.arg); err == nil {
			f.violate("ioctl worked before CREATE", fmt.Sprintf("ioctl %#x", c.req))
		}
	}
	if err := f.ioctl(fd, 0xdeadbeef&^uintptr(0xff00)|uapi.Magic<<8, 0); err == nil {
		f.violate("unknown ioctl accepted", "")
	}
	// CREATE with bad arguments: all refused, and no disk appears.
	badCreates := []uapi.Create{
		{Size: 0}, {Size: 4095}, {Size: 4096 + 512}, {Size: uapi.MaxSize + 4096}, {Size: 1 << 62},
		{Size: 1 << 20, MapMode: uint32(len(uapi.ModeList))}, {Size: 1 << 20, MapMode: 1 << 31}, {Size: 1 << 20, IOTimeout: uapi.MaxIOTimeout + 1},
	}
	for _, bc := range badCreates {
		x := bc
		if err := call(f, fd, uapi.IocCreate, &x); err == nil {
			f.violate("bad CREATE accepted", fmt.Sprintf("%+v made userblk%d", bc, x.Index))
			unix.Close(fd)
			fd, _ = unix.Open(f.ctl, unix.O_RDWR|unix.O_CLOEXEC, 0)
		}
	}
	for _, p := range []uintptr{bad.unmapped, bad.kernel} {
		if err := f.ioctl(fd, uapi.IocCreate, p); err == nil {
			f.violate("CREATE read through a bad pointer", fmt.Sprintf("%#x", p))
		}
	}
	if !unsafeAllowed() {
		for _, m := range []uint32{uapi.MapAtomic, uapi.MapLocal, uapi.MapAtomicSleep} {
			x := uapi.Create{Size: 1 << 20, MapMode: m}
			if err := call(f, fd, uapi.IocCreate, &x); err == nil {
				f.violate("bug mode accepted without unsafe_modes", fmt.Sprintf("map_mode %s made userblk%d", uapi.ModeList[m], x.Index))
				unix.Close(fd)
				fd, _ = unix.Open(f.ctl, unix.O_RDWR|unix.O_CLOEXEC, 0)
			}
		}
	}
	// CREATE races on one fd: exactly one may win.
	threads := 2 + rng.Intn(4)
	var wg sync.WaitGroup
	var won atomic.Int32
	startGun := make(chan struct{})
	// Sometimes the answer cannot be written back (a read-only mapping of a valid
	// request): the disk then exists although CREATE failed, and must still go with the fd.
	var roArg uintptr
	if rng.Intn(4) == 0 {
		if m, err := readOnlyCreate(uapi.Create{Size: 1 << 20, MapMode: f.mode, IOTimeout: f.timeout}); err == nil {
			defer unix.Munmap(m)
			roArg = ptr(&m[0])
		}
	}
	for i := 0; i < threads; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			x := getScratch()
			defer putScratch(x)
			*(*uapi.Create)(unsafe.Pointer(&x[0])) = uapi.Create{Size: 1 << 20, MapMode: f.mode, IOTimeout: f.timeout}
			arg := uintptr(unsafe.Pointer(&x[0]))
			if roArg != 0 && i == 0 {
				arg = roArg
			}
			<-startGun
			if err := f.ioctl(fd, uapi.IocCreate, arg); err == nil {
				won.Add(1)
			}
		}()
	}
	close(startGun)
	wg.Wait()
	now := disks()
	var mine []string
	for d := range now {
		if !before[d] {
			mine = append(mine, d)
		}
	}
	sort.Strings(mine)
	if len(mine) > 1 {
		f.violate("two disks from one fd", fmt.Sprintf("%d racing CREATEs on one fd made %s", threads, strings.Join(mine, ", ")))
	}
	if won.Load() > 1 {
		f.violate("two disks from one fd", fmt.Sprintf("%d of %d racing CREATEs succeeded", won.Load(), threads))
	}
	// A second CREATE on a served fd is refused.
	if len(mine) > 0 {
		x := uapi.Create{Size: 1 << 20, MapMode: f.mode}
		if err := call(f, fd, uapi.IocCreate, &x); err == nil {
			f.violate("two disks from one fd", fmt.Sprintf("a later CREATE made userblk%d", x.Index))
		}
		// Unknown flags are refused; NOWAIT on an idle disk says EAGAIN.
		buf := alignedBuf(uapi.MaxSegment)
		for i := 0; i < 4; i++ {
			r := uapi.Request{Buf: uint64(ptr(&buf[0])), BufLen: uapi.MaxSegment, Flags: uapi.GetNowait | 1<<uint(1+rng.Intn(31))}
			if err := call(f, fd, uapi.IocGetRequest, &r); err != unix.EINVAL {
				f.violate("unknown GET_REQUEST flags accepted", fmt.Sprintf("flags %#x: %s", r.Flags, errno(err)))
			}
		}
		r := uapi.Request{Buf: uint64(ptr(&buf[0])), BufLen: uapi.MaxSegment, Flags: uapi.GetNowait}
		if err := call(f, fd, uapi.IocGetRequest, &r); err == nil {
			f.violate("GET_REQUEST invented a request", fmt.Sprintf("xid %08x on an idle disk", r.Xid))
		}
		// Stale, future and garbage xids on an idle disk.
		for i := 0; i < 8; i++ {
			c := uapi.Complete{Xid: rng.Uint64() >> uint(rng.Intn(64)), Status: -int32(rng.Intn(200))}
			if err := call(f, fd, uapi.IocComplete, &c); err == nil {
				f.violate("COMPLETE accepted an xid never handed out", fmt.Sprintf("xid %#x on an idle disk", c.Xid))
			}
		}
		c := uapi.Complete{Xid: 1, Status: 5}
		if err := call(f, fd, uapi.IocComplete, &c); err == nil {
			f.violate("COMPLETE accepted a positive status", "")
		}
		if rng.Intn(2) == 0 {
			f.ioctl(fd, uapi.IocShutdown, 0)
			if err := call(f, fd, uapi.IocGetRequest, &r); err != unix.ESHUTDOWN {
				f.violate("GET_REQUEST after SHUTDOWN", errno(err))
			}
		}
		f.tryRmmod("a disk exists (unserved)")
		unix.Munmap(buf)
	}
	unix.Close(fd)
	for _, d := range mine {
		if disks()[d] {
			f.violate("a disk left after close", d+" still exists after its control fd was closed")
		}
	}
}

// readOnlyCreate maps a valid CREATE request read-only (through a file).
func readOnlyCreate(c uapi.Create) ([]byte, error) {
	fl, err := os.CreateTemp("", "userblkfuzz-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(fl.Name())
	defer fl.Close()
	b := make([]byte, 4096)
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&c)), unsafe.Sizeof(c)))
	if _, err := fl.Write(b); err != nil {
		return nil, err
	}
	return unix.Mmap(int(fl.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
}

// tryRmmod: rmmod must fail while a disk exists.
func (f *fuzzer) tryRmmod(when string) {
	if f.module == "" {
		return
	}
	f.ops.Add(1)
	err := unix.DeleteModule(f.module, unix.O_NONBLOCK)
	if err == nil {
		f.violate("rmmod succeeded while "+when, "the module is gone; stopping")
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
	}
}

// block content: 16-byte header (block, generation, seed) then a pattern.
func fill(b []byte, blk, gen uint64, seed int64) {
	binary.LittleEndian.PutUint64(b[0:], blk)
	binary.LittleEndian.PutUint64(b[8:], gen)
	x := uint32(blk*2654435761) ^ uint32(gen) ^ uint32(seed)
	for i := 16; i < len(b); i += 4 {
		x = x*1664525 + 1013904223
		binary.LittleEndian.PutUint32(b[i:], x)
	}
}

// servingChild is a running serving child and what it says.
type servingChild struct {
	cmd      *exec.Cmd
	ops      atomic.Int64
	got      chan string // GOT lines
	readDone chan struct{}
	idx      int
}

// startChild starts a serving child of the given kind and waits for its disk; nil if
// it could not make one (noted; the module may be gone).
func (f *fuzzer) startChild(kind string, seed int64, size uint64) *servingChild {
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-serve-child", "-kind", kind, "-seed", strconv.FormatInt(seed, 10), "-mode", f.modeName,
		"-io-timeout", strconv.Itoa(int(f.timeout)), "-size", strconv.FormatUint(size, 10), "-ctl", f.ctl)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		f.note(err.Error())
		return nil
	}
	if err := cmd.Start(); err != nil {
		f.note(err.Error())
		return nil
	}
	ch := &servingChild{cmd: cmd, got: make(chan string, 1), readDone: make(chan struct{})}
	index := make(chan int, 1)
	go func() {
		defer close(ch.readDone)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			kind, rest, _ := strings.Cut(line, " ")
			switch kind {
			case "INDEX":
				n, _ := strconv.Atoi(rest)
				index <- n
			case "OPS":
				n, _ := strconv.ParseInt(rest, 10, 64)
				ch.ops.Store(n)
			case "GOT":
				select {
				case ch.got <- rest:
				default:
				}
			case "V":
				inv, detail, _ := strings.Cut(rest, "\t")
				f.violate(inv, detail)
			case "NOTE":
				f.note(rest)
			}
		}
	}()
	select {
	case ch.idx = <-index:
		return ch
	case <-ch.readDone:
		cmd.Wait()
		f.note("the serving child exited before creating a disk")
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
		return nil
	}
}

// finish waits for the child to exit (it was told to) and checks its disk went too.
func (f *fuzzer) finish(ch *servingChild, name string, bound time.Duration) {
	waited := make(chan struct{})
	go func() {
		<-ch.readDone
		ch.cmd.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(bound):
		f.violate("serving child did not exit", fmt.Sprintf("%s: still running %v after SHUTDOWN/kill", name, bound))
		ch.cmd.Process.Kill()
		<-waited
	}
	f.ops.Add(ch.ops.Load())
	if disks()[name] {
		f.violate("a disk left after close", name+" still exists after its serving process exited")
	}
}

// Ways a serving round ends.
const (
	endKill  = iota // SIGKILL
	endShut         // SHUTDOWN (SIGUSR1)
	endStop         // SIGSTOP, then SIGKILL
	endClean        // SIGTERM after the I/O stopped
	endClose        // the control fd closed under the serving threads (SIGUSR2)
	numEndings
)

// serveRound starts a serving child of the kind, does verified I/O on its disk from
// several threads, and ends the child at a random point (see the end* ways). Rounds of
// the protnone and stall kinds outlast the io_timeout of their hostile phase.
func (f *fuzzer) serveRound(rng *rand.Rand, kind string, size uint64, left time.Duration) {
	delay := 0
	if f.busyDelay > 0 {
		switch {
		case kind == kindRace || kind == kindProtnone:
			delay = f.busyDelay/3 + rng.Intn(f.busyDelay-f.busyDelay/3+1)
		case rng.Intn(2) == 0:
			delay = rng.Intn(f.busyDelay + 1)
		}
		setBusyDelay(delay)
	}
	ch := f.startChild(kind, rng.Int63(), size)
	if ch == nil {
		return
	}
	dev := fmt.Sprintf("/dev/userblk%d", ch.idx)
	name := fmt.Sprintf("userblk%d", ch.idx)
	bdev, err := unix.Open(dev, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		f.note(fmt.Sprintf("open %s: %v", dev, err))
		ch.cmd.Process.Kill()
		ch.cmd.Wait()
		<-ch.readDone
		return
	}
	tmo := time.Duration(f.timeout) * time.Second
	runFor := time.Duration(500+rng.Intn(2500)) * time.Millisecond
	workers := 3
	var endAt time.Duration
	endHow := rng.Intn(numEndings)
	switch kind {
	case kindProtnone, kindStall:
		// The hostile phase (io_timeout + 1 s at most), a timeout, then some serving.
		runFor = tmo + time.Duration(2000+rng.Intn(1500))*time.Millisecond
		endAt = runFor - time.Duration(rng.Intn(500))*time.Millisecond
		workers = 6
	case kindRace:
		if rng.Intn(2) == 0 {
			endHow = endClose
		}
	}
	if runFor > left {
		runFor = max(left, 200*time.Millisecond)
	}
	if endAt == 0 || endAt > runFor {
		endAt = time.Duration(float64(runFor) * (0.3 + 0.7*rng.Float64()))
	}
	var stop atomic.Bool
	bound := tmo*2 + 20*time.Second
	var wg sync.WaitGroup
	blocks := size / 4096
	for w := 0; w < workers; w++ {
		wg.Add(1)
		wseed := rng.Int63()
		go func() {
			defer wg.Done()
			f.ioWorker(rand.New(rand.NewSource(wseed)), bdev, w, workers, blocks, &stop, bound, name, nil)
		}()
	}
	time.Sleep(endAt / 2)
	f.tryRmmod("a disk was served")
	time.Sleep(endAt - endAt/2)
	p := ch.cmd.Process
	switch endHow {
	case endKill:
		p.Signal(syscall.SIGKILL)
	case endShut:
		p.Signal(syscall.SIGUSR1)
	case endStop:
		p.Signal(syscall.SIGSTOP)
		time.Sleep(time.Duration(rng.Intn(300)) * time.Millisecond)
		p.Signal(syscall.SIGKILL)
	case endClose:
		p.Signal(syscall.SIGUSR2)
	}
	time.Sleep(runFor - endAt)
	stop.Store(true)
	if endHow == endClean {
		p.Signal(syscall.SIGTERM)
	}
	wg.Wait()
	f.tryRmmod("a disk was open")
	unix.Close(bdev)
	if endHow == endClose {
		// The threads exit once their ioctls fail; one asleep in GET_REQUEST on an idle
		// disk is woken by nothing but a signal.
		time.AfterFunc(2*time.Second, func() { p.Signal(syscall.SIGKILL) })
	}
	f.finish(ch, name, bound)
}

// scenario runs one hostile daemon of the kind for hold while workers do I/O on its
// disk: every I/O must end within io_timeout + 2 s (failed, once the daemon is
// hostile), no violation otherwise, and the disk must go with the daemon.
func (f *fuzzer) scenario(kind string, size uint64, hold time.Duration) {
	if f.busyDelay > 0 {
		setBusyDelay(f.busyDelay) // GET_REQUEST's copies held open: the timeout meets BUSY
	}
	ch := f.startChild(kind, f.seed, size)
	if ch == nil {
		return
	}
	name := fmt.Sprintf("userblk%d", ch.idx)
	bdev, err := unix.Open("/dev/"+name, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		f.note(fmt.Sprintf("open /dev/%s: %v", name, err))
		ch.cmd.Process.Kill()
		ch.cmd.Wait()
		return
	}
	tmo := time.Duration(f.timeout) * time.Second
	limit := tmo + 2*time.Second
	var stop atomic.Bool
	var wg sync.WaitGroup
	const workers = 4
	rng := rand.New(rand.NewSource(f.seed))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		wseed := rng.Int63()
		go func() {
			defer wg.Done()
			f.ioWorker(rand.New(rand.NewSource(wseed)), bdev, w, workers, size/4096, &stop, tmo*2+20*time.Second, name, &limit)
		}()
	}
	start := time.Now()
	if kind == kindStallGet {
		select {
		case x := <-ch.got:
			ch.cmd.Process.Signal(syscall.SIGSTOP)
			fmt.Fprintf(os.Stderr, "userblkfuzz: %s: the daemon holds xid %s and is stopped\n", name, x)
		case <-time.After(hold):
			f.violate("scenario did not start", "no GET_REQUEST returned within "+hold.String())
		}
	}
	time.Sleep(time.Until(start.Add(hold)))
	stop.Store(true)
	wg.Wait()
	fmt.Fprintf(os.Stderr, "userblkfuzz: %s: %s for %v: %d reads, %d writes, %d I/O errors, longest I/O %v (limit %v)\n",
		name, kind, hold, f.reads.Load(), f.writes.Load(), f.ioErrs.Load(), time.Duration(f.longest.Load()), limit)
	unix.Close(bdev)
	ch.cmd.Process.Signal(syscall.SIGKILL) // stopped or not, the fd still open until now
	f.finish(ch, name, tmo*2+20*time.Second)
}

// ioWorker writes and reads back its own blocks (the w-th of workers equal ranges)
// with O_DIRECT until stop, 1 to 4 blocks at a time (a bio of as many segments),
// checking the data and that no I/O takes longer than bound (or, given, limit: a
// violation of its own, the fuzzer goes on).
func (f *fuzzer) ioWorker(rng *rand.Rand, fd, w, workers int, blocks uint64, stop *atomic.Bool, bound time.Duration, name string, limit *time.Duration) {
	runtime.LockOSThread()
	buf := alignedBuf(4 * 4096)
	defer unix.Munmap(buf)
	gen := map[uint64]uint64{}   // block -> generation written (0: zeros)
	unknown := map[uint64]bool{} // a failed write: contents undefined
	var seq uint64
	errs := 0
	per := blocks / uint64(workers)
	for !stop.Load() && (errs < 50 || limit != nil) {
		n := uint64(1 + rng.Intn(4))
		blk := uint64(w)*per + uint64(rng.Intn(int(per)-4))
		p := buf[:n*4096]
		off := int64(blk * 4096)
		write := rng.Intn(2) == 0
		watch := time.AfterFunc(bound, func() {
			f.violate("bio never completed", fmt.Sprintf("%s: %s of block %d has not returned after %v", name, map[bool]string{true: "write", false: "read"}[write], blk, bound))
			f.report(0)
			os.Exit(1)
		})
		var err error
		var k int
		began := time.Now()
		if write {
			seq++
			for i := uint64(0); i < n; i++ {
				fill(p[i*4096:(i+1)*4096], blk+i, seq, f.seed)
			}
			k, err = unix.Pwrite(fd, p, off)
		} else {
			k, err = unix.Pread(fd, p, off)
		}
		watch.Stop()
		took := time.Since(began)
		for {
			old := f.longest.Load()
			if int64(took) <= old || f.longest.CompareAndSwap(old, int64(took)) {
				break
			}
		}
		if limit != nil && took > *limit {
			f.violate("submitter waited longer than io_timeout + 2 s", fmt.Sprintf("%s: %s of %d blocks at %d took %v (%v)",
				name, map[bool]string{true: "write", false: "read"}[write], n, blk, took.Round(time.Millisecond), errno(err)))
		}
		if err != nil || k != len(p) {
			f.ioErrs.Add(1)
			errs++
			if write {
				for i := uint64(0); i < n; i++ {
					unknown[blk+i] = true
				}
			}
			continue
		}
		if write {
			f.writes.Add(1)
			for i := uint64(0); i < n; i++ {
				gen[blk+i] = seq
				delete(unknown, blk+i)
			}
			continue
		}
		for i := uint64(0); i < n; i++ {
			b := blk + i
			if unknown[b] {
				continue
			}
			want := make([]byte, 4096)
			if g := gen[b]; g != 0 {
				fill(want, b, g, f.seed)
			}
			got := p[i*4096 : (i+1)*4096]
			if string(got) != string(want) {
				f.violate("data not what was written", fmt.Sprintf("%s block %d: want gen %d crc %08x, read crc %08x (header block %d gen %d)",
					name, b, gen[b], crc32.ChecksumIEEE(want), crc32.ChecksumIEEE(got),
					binary.LittleEndian.Uint64(got), binary.LittleEndian.Uint64(got[8:])))
				unknown[b] = true
			}
		}
		f.reads.Add(1)
	}
}
