// Package uapi mirrors kmod/uapi/userblk.h, the ioctl ABI between userblk.ko and its
// daemon. TestMatchesCHeader checks every size, offset, ioctl number, constant and mode
// name against the C header with each available compiler (host, armhf, i386).
package uapi

import "unsafe"

// Control device name under /dev.
const CtlName = "userblk-ctl"

// Map modes (USERBLK_MAP_*).
const (
	MapDefault = 0
	MapAtomic  = 1
	MapLocal   = 2
	MapKmap    = 3
	MapCopier  = 4
	// MapAtomicSleep: kmap_atomic() handed over, and the submitter sleeps holding it
	// (the original report's driver as written).
	MapAtomicSleep = 5
)

// ModeList is USERBLK_MODE_NAMES: the names map_mode= takes, indexed by MAP_* number.
var ModeList = [...]string{MapDefault: "default", MapAtomic: "atomic", MapLocal: "local", MapKmap: "kmap", MapCopier: "copier",
	MapAtomicSleep: "atomic-sleep"}

// ModeNames maps the module's mode names to their numbers.
var ModeNames = func() map[string]uint32 {
	m := map[string]uint32{}
	for i, n := range ModeList {
		m[n] = uint32(i)
	}
	return m
}()

// UnsafeMode reports whether a mode is one of the bug modes the module refuses unless
// it was loaded with unsafe_modes=1.
func UnsafeMode(m uint32) bool { return m == MapAtomic || m == MapLocal || m == MapAtomicSleep }

// Event counters (USERBLK_EV_*): files in EventsDir named by EventNames, each a decimal
// count for every disk since the module was loaded.
const (
	EvTimeoutQueued = 0
	EvTimeoutSent   = 1
	EvTimeoutBusy   = 2
	EvCompleteBusy  = 3
	EvCloseBusy     = 4
	EvDeadBusy      = 5
	EvMultisegBio   = 6
	EvMidbioError   = 7
	EvCount         = 8
)

// EventsDir is USERBLK_EVENTS_DIR.
const EventsDir = "/sys/class/misc/" + CtlName + "/events"

// EventNames is USERBLK_EVENT_NAMES, indexed by Ev* number.
var EventNames = [EvCount]string{
	EvTimeoutQueued: "timeout_queued", EvTimeoutSent: "timeout_sent", EvTimeoutBusy: "timeout_busy",
	EvCompleteBusy: "complete_busy", EvCloseBusy: "close_busy", EvDeadBusy: "dead_busy",
	EvMultisegBio: "multiseg_bio", EvMidbioError: "midbio_error",
}

// Ops (USERBLK_OP_*).
const (
	OpRead  = 0
	OpWrite = 1
)

// GetNowait is USERBLK_GET_NOWAIT.
const GetNowait = 1

// MaxSegment is USERBLK_MAX_SEGMENT.
const MaxSegment = 65536

// MaxSize is USERBLK_MAX_SIZE, the largest disk in bytes.
const MaxSize = 1 << 40

// MaxIOTimeout is USERBLK_MAX_IO_TIMEOUT, in seconds.
const MaxIOTimeout = 3600

// Create is struct userblk_create.
type Create struct {
	Size      uint64
	MapMode   uint32
	Index     uint32
	IOTimeout uint32 // seconds; 0: the module's io_timeout
	DevID     uint32
}

// Request is struct userblk_request.
type Request struct {
	Xid    uint64
	Pos    uint64
	Len    uint32
	Op     uint32
	Buf    uint64
	BufLen uint32
	Flags  uint32
}

// Complete is struct userblk_complete.
type Complete struct {
	Xid    uint64
	Buf    uint64
	Len    uint32
	Status int32
}

// Linux's generic ioctl encoding (asm-generic/ioctl.h), which arm and x86 both use.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
)

func ioc(dir, typ, nr, size uintptr) uintptr { return dir<<30 | size<<16 | typ<<8 | nr }

// Magic is USERBLK_IOC_MAGIC.
const Magic = 0xB7

// Ioctl numbers.
var (
	IocCreate     = ioc(iocRead|iocWrite, Magic, 1, unsafe.Sizeof(Create{}))
	IocGetRequest = ioc(iocRead|iocWrite, Magic, 2, unsafe.Sizeof(Request{}))
	IocComplete   = ioc(iocWrite, Magic, 3, unsafe.Sizeof(Complete{}))
	IocShutdown   = ioc(iocNone, Magic, 4, 0)
)
