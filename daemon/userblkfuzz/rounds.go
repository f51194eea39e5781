package main

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Serving round kinds, drawn by fuzz in these proportions (out of 10), after api rounds
// (1 of 10). Each interleaving the fuzzer must reach has a kind that reaches it on
// purpose: protnone the timeout meeting BUSY (and SENT, for reads), stall the timeout
// meeting SENT, race COMPLETE naming a request being copied, close the fd closed during
// a copy; every kind does multi-segment I/O that fails midway now and then.
var roundKinds = []struct {
	kind   string
	weight int
}{{kindAdversarial, 1}, {kindRace, 2}, {kindProtnone, 2}, {kindStall, 1}, {kindClose, 3}}

// apiWeight: api rounds per 10.
const apiWeight = 1

// fuzz draws rounds from the seed until duration is up.
func (f *fuzzer) fuzz(size uint64, duration time.Duration) {
	rng := rand.New(rand.NewSource(f.seed))
	deadline := time.Now().Add(duration)
	rounds := map[string]int{}
	for time.Now().Before(deadline) && !f.isStopped() {
		seed := rng.Int63()
		n := rng.Intn(10)
		if n < apiWeight {
			rounds["api"]++
			f.apiRound(rand.New(rand.NewSource(seed)))
			continue
		}
		n -= apiWeight
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
func (f *fuzzer) startChild(kind string, seed int64, size uint64, ioTimeout uint32) *servingChild {
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-serve-child", "-kind", kind, "-seed", strconv.FormatInt(seed, 10), "-mode", f.modeName,
		"-io-timeout", strconv.Itoa(int(ioTimeout)), "-size", strconv.FormatUint(size, 10), "-ctl", f.ctl)
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
	// The parent ends children with SIGKILL, SIGTERM, SIGUSR1 or a close; anything else
	// (Go's fatal errors exit 2, a signal it did not send) is the fuzzer's own bug, and a
	// round whose child died early raced nothing: it goes in the report's errors.
	if st := ch.cmd.ProcessState; st != nil {
		ws, _ := st.Sys().(syscall.WaitStatus)
		if st.ExitCode() == 2 || (ws.Signaled() && ws.Signal() != syscall.SIGKILL) {
			f.note(fmt.Sprintf("a serving child failed (%v): see its stderr", st))
		}
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
	endSelf = numEndings // (close rounds, not drawn) the child closed its fd itself; SIGTERM at the end
)

// serveRound starts a serving child of the kind, does verified I/O on its disk from
// several threads, and ends the child at a random point (see the end* ways). Rounds of
// the protnone and stall kinds outlast the io_timeout of their hostile phase.
func (f *fuzzer) serveRound(rng *rand.Rand, kind string, size uint64, left time.Duration) {
	delay := 0
	if f.busyDelay > 0 {
		switch {
		case kind == kindProtnone || kind == kindClose:
			// The longer a copy lasts, the likelier the timeout (protnone: a request
			// handed back for ever is BUSY most of the time) or the close meets it.
			delay = f.busyDelay
		case kind == kindRace:
			delay = f.busyDelay/3 + rng.Intn(f.busyDelay-f.busyDelay/3+1)
		case rng.Intn(2) == 0:
			delay = rng.Intn(f.busyDelay + 1)
		}
		setBusyDelay(delay)
	}
	// The hostile kinds' disks time out after 1 s (at most the job's io_timeout): the
	// timeout is what they exist to reach, and shorter rounds reach it more often.
	tmoS := f.timeout
	if kind == kindProtnone || kind == kindStall {
		tmoS = min(tmoS, 1)
	}
	ch := f.startChild(kind, rng.Int63(), size, tmoS)
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
	tmo := time.Duration(tmoS) * time.Second
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
	case kindClose:
		// The child closes its fd itself (closeWhileBusy), 150-450 ms in: one close
		// per round, so these rounds are short and many.
		runFor = time.Duration(700+rng.Intn(400)) * time.Millisecond
		endAt = runFor
		endHow = endSelf
		workers = 4
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
	if endHow == endClean || endHow == endSelf {
		p.Signal(syscall.SIGTERM)
	}
	wg.Wait()
	f.tryRmmod("a disk was open")
	unix.Close(bdev)
	if endHow == endClose || endHow == endSelf {
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
	ch := f.startChild(kind, f.seed, size, f.timeout)
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
