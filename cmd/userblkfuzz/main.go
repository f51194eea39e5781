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
// COMPLETE and SHUTDOWN against the copy) while this process does verified O_DIRECT I/O
// and kills, shuts down or stops the child at a random point. Crashes, oopses and hung
// tasks are the lab's to catch on the console; the invariants are counted in the
// stress-report JSON (-json) as mismatches.
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
		size     = flag.Uint64("size", 8<<20, "disk size")
	)
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
		os.Exit(runChild(f, f.mode, *size, f.timeout))
	}
	rng := rand.New(rand.NewSource(f.seed))
	deadline := time.Now().Add(*duration)
	rounds := map[string]int{}
	for time.Now().Before(deadline) && !f.isStopped() {
		seed := rng.Int63()
		if rng.Intn(3) == 0 {
			rounds["api"]++
			f.apiRound(rand.New(rand.NewSource(seed)))
		} else {
			rounds["serve"]++
			f.serveRound(rand.New(rand.NewSource(seed)), *size, time.Until(deadline))
		}
	}
	fmt.Fprintf(os.Stderr, "userblkfuzz: %d api rounds, %d serving rounds, %d ioctls, %d verified reads, %d writes, %d I/O errors (injected), %d violations\n",
		rounds["api"], rounds["serve"], f.ops.Load(), f.reads.Load(), f.writes.Load(), f.ioErrs.Load(), len(f.violations))
	if err := f.report(); err != nil {
		fmt.Fprintln(os.Stderr, "userblkfuzz:", err)
		os.Exit(2)
	}
	// Like blkstress: with -json the report carries the verdict and the step succeeds.
	if len(f.violations) > 0 && f.jsonPath == "" {
		os.Exit(1)
	}
}

func (f *fuzzer) isStopped() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stopped
}

func (f *fuzzer) report() error {
	if f.jsonPath == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := stressreport.Report{Tool: "userblkfuzz", Mode: f.modeName, Device: f.ctl, Seed: f.seed,
		Seconds: time.Since(f.start).Seconds(), Reads: f.reads.Load(), Writes: f.writes.Load(),
		Ops: f.ops.Load(), Mismatches: len(f.violations), FirstMS: -1, Errors: f.notes}
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
		{Size: 1 << 20, MapMode: 5}, {Size: 1 << 20, MapMode: 1 << 31}, {Size: 1 << 20, IOTimeout: uapi.MaxIOTimeout + 1},
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
		for _, m := range []uint32{uapi.MapAtomic, uapi.MapLocal} {
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

// serveRound starts a serving child, does verified I/O on its disk from several
// threads, and ends the child at a random point (SIGKILL, SHUTDOWN, SIGSTOP then
// SIGKILL, or a clean stop).
func (f *fuzzer) serveRound(rng *rand.Rand, size uint64, left time.Duration) {
	exe, _ := os.Executable()
	childSeed := rng.Int63()
	cmd := exec.Command(exe, "-serve-child", "-seed", strconv.FormatInt(childSeed, 10), "-mode", f.modeName,
		"-io-timeout", strconv.Itoa(int(f.timeout)), "-size", strconv.FormatUint(size, 10), "-ctl", f.ctl)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		f.note(err.Error())
		return
	}
	if err := cmd.Start(); err != nil {
		f.note(err.Error())
		return
	}
	var childOps atomic.Int64
	index := make(chan int, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
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
				childOps.Store(n)
			case "V":
				inv, detail, _ := strings.Cut(rest, "\t")
				f.violate(inv, detail)
			case "NOTE":
				f.note(rest)
			}
		}
	}()
	var idx int
	select {
	case idx = <-index:
	case <-readDone:
		cmd.Wait()
		f.note("the serving child exited before creating a disk")
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
		return
	}
	dev := fmt.Sprintf("/dev/userblk%d", idx)
	name := fmt.Sprintf("userblk%d", idx)
	bdev, err := unix.Open(dev, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		f.note(fmt.Sprintf("open %s: %v", dev, err))
		cmd.Process.Kill()
		cmd.Wait()
		<-readDone
		return
	}
	runFor := time.Duration(500+rng.Intn(2500)) * time.Millisecond
	if runFor > left {
		runFor = max(left, 200*time.Millisecond)
	}
	endHow := rng.Intn(4) // 0 SIGKILL, 1 SHUTDOWN, 2 SIGSTOP then SIGKILL, 3 clean
	var stop atomic.Bool
	bound := time.Duration(f.timeout)*2*time.Second + 20*time.Second
	var wg sync.WaitGroup
	const workers = 3
	blocks := size / 4096
	for w := 0; w < workers; w++ {
		wg.Add(1)
		wseed := rng.Int63()
		go func() {
			defer wg.Done()
			f.ioWorker(rand.New(rand.NewSource(wseed)), bdev, w, workers, blocks, &stop, bound, name)
		}()
	}
	endAt := time.Duration(float64(runFor) * (0.3 + 0.7*rng.Float64()))
	time.Sleep(endAt / 2)
	f.tryRmmod("a disk was served")
	time.Sleep(endAt - endAt/2)
	switch endHow {
	case 0:
		cmd.Process.Signal(syscall.SIGKILL)
	case 1:
		cmd.Process.Signal(syscall.SIGUSR1)
	case 2:
		cmd.Process.Signal(syscall.SIGSTOP)
		time.Sleep(time.Duration(rng.Intn(300)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
	}
	time.Sleep(runFor - endAt)
	stop.Store(true)
	if endHow == 3 {
		cmd.Process.Signal(syscall.SIGTERM)
	}
	wg.Wait()
	f.tryRmmod("a disk was open")
	unix.Close(bdev)
	waited := make(chan struct{})
	go func() {
		<-readDone
		cmd.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(bound):
		f.violate("serving child did not exit", fmt.Sprintf("%s: still running %v after SHUTDOWN/kill", name, bound))
		cmd.Process.Kill()
		<-waited
	}
	f.ops.Add(childOps.Load())
	if disks()[name] {
		f.violate("a disk left after close", name+" still exists after its serving process exited")
	}
}

// ioWorker writes and reads back its own blocks (w, w+workers, …) with O_DIRECT until
// stop, checking the data and that no I/O takes longer than bound.
func (f *fuzzer) ioWorker(rng *rand.Rand, fd, w, workers int, blocks uint64, stop *atomic.Bool, bound time.Duration, name string) {
	runtime.LockOSThread()
	buf := alignedBuf(4 * 4096)
	defer unix.Munmap(buf)
	gen := map[uint64]uint64{}   // block -> generation written (0: zeros)
	unknown := map[uint64]bool{} // a failed write: contents undefined
	var seq uint64
	errs := 0
	for !stop.Load() && errs < 50 {
		n := uint64(1 + rng.Intn(4))
		blk := uint64(w) + uint64(rng.Intn(int(blocks)/workers-4))*uint64(workers)
		// n consecutive blocks of ours: blk, blk+workers, … are not consecutive, so
		// multi-block I/O only covers blocks that are all ours when workers == 1.
		if workers > 1 {
			n = 1
		}
		p := buf[:n*4096]
		off := int64(blk * 4096)
		write := rng.Intn(2) == 0
		watch := time.AfterFunc(bound, func() {
			f.violate("bio never completed", fmt.Sprintf("%s: %s of block %d has not returned after %v", name, map[bool]string{true: "write", false: "read"}[write], blk, bound))
			f.report()
			os.Exit(1)
		})
		var err error
		var k int
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
