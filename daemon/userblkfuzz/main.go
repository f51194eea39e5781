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
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
	flag.IntVar(&f.busyDelay, "busy-delay", 20000, "the most busy_delay_us a round sets (the module holds copies open that long); 0: leave it alone")
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

func (f *fuzzer) isStopped() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stopped
}
