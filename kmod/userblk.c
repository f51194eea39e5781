// SPDX-License-Identifier: GPL-2.0
/*
 * userblk - a block device whose data a userspace daemon supplies.
 *
 * A bio's segments are handed one at a time to a daemon that loops on ioctls on
 * /dev/userblk-ctl: GET_REQUEST blocks until a segment is pending, COMPLETE hands back
 * the status and a read's data. The submitting thread waits until its segment is done,
 * at most io_timeout seconds: then the segment fails with -EIO, as nbd's timeout does.
 *
 * The module exists to show one bug class on real kernels: a kmap_atomic() or
 * kmap_local_page() address is valid only on the CPU (and in the task) that made it.
 * Handing such an address to another thread, as the original report's driver did,
 * makes that thread read and write through whatever its own TLB still holds for the
 * address: on HIGHMEM machines two threads see different bytes "at the same address".
 * map_mode chooses between that bug (atomic, local, atomic-sleep) and its fixes (kmap,
 * copier). atomic-sleep is the report's driver as written: the submitter sleeps while it
 * holds its kmap_atomic() mapping, which a kernel that counts preemption reports
 * ("BUG: scheduling while atomic"; with DEBUG_ATOMIC_SLEEP "sleeping function called
 * from invalid context") and one without PREEMPT_COUNT lets pass. The bug modes are
 * refused unless the module was loaded with unsafe_modes=1, and a disk that uses one
 * taints the kernel.
 *
 * Every event of a traced transaction is printed as one line (userblk_trace_line(),
 * which defines the format) for kmodlab's trace oracle.
 *
 * Locking and lifetime
 * ====================
 *
 * One control fd (struct userblk_ctl) serves at most one disk (struct userblk_dev).
 * ctl->lock serialises CREATE; the disk pointer is published with release ordering and
 * read with acquire ordering, so an ioctl sees either no disk or a fully built one. The
 * disk lives until the fd's release, which fails what is pending, waits in
 * del_gendisk() for every submitter to leave and frees it. Each disk holds a module
 * reference, so rmmod cannot succeed while one exists.
 *
 * A request (struct userblk_req, one bio segment) is in one of four states:
 *
 *   QUEUED   on dev->queued: waiting for GET_REQUEST.
 *   SENT     on dev->sent: described to the daemon, waiting for its COMPLETE.
 *   BUSY     exactly one thread owns it and is copying through its page or mapping
 *            (GET_REQUEST copying a write's data out, COMPLETE copying a read's data
 *            in), or is about to end it. No other path may change it: not COMPLETE (it
 *            only takes SENT requests), not SHUTDOWN/fail_all, not the submitter's
 *            timeout. An ioctl's BUSY request is on dev->busy (by busy_node, under
 *            dev->lock) for bookkeeping only: COMPLETE and close look there to count
 *            what they raced, never touch it. The one field others may write is
 *            req->expired (under dev->lock, see Waits). Copies in BUSY run with page
 *            faults disabled, so BUSY never sleeps and lasts a bounded time; a copy that
 *            would fault on the daemon's buffer gives the request back, faults the
 *            buffer in while owning nothing, and tries again. An atomic-mode request's
 *            owner also runs BUSY with preemption disabled (see Waits).
 *   DONE     status final, submitter woken. Nothing but the submitter (and, for a
 *            traced read, the COMPLETE that is logging its "readx") touches it again.
 *
 * Transitions, each made by one helper, all under dev->lock except BUSY -> DONE
 * (req_finish(), which the owner alone may call):
 *
 *   (new) -> QUEUED    req_queue()     the submitter (refused once the disk is dead)
 *   QUEUED -> BUSY     req_own()       GET_REQUEST
 *   SENT -> BUSY       req_own()       COMPLETE (by xid)
 *   QUEUED -> BUSY     req_take()      fail_all; the submitter's timeout (ends it at once)
 *   SENT -> BUSY       req_take()      fail_all; the submitter's timeout (ends it at once)
 *   BUSY -> SENT       req_give_back() GET_REQUEST after the copy out
 *   BUSY -> QUEUED     req_give_back() GET_REQUEST whose copy hit the daemon's buffer
 *   BUSY -> SENT       req_give_back() COMPLETE whose copy failed (the daemon may retry)
 *   BUSY -> DONE       req_end(), req_end_busy(), req_finish_busy()
 *                                      the owner: success, error, dead disk, timeout
 *                                      (an expired request: the submitter's status)
 *
 * req_give_back() ends the request instead when the disk died meanwhile (fail_all could
 * not take a BUSY request; -EIO) or when the submitter's timeout found it BUSY and
 * marked it expired (with the submitter's status), so nothing is left on a dead disk's
 * lists and no expired request is handed back to a daemon that may never serve it.
 *
 * References (req->ref): the submitter holds one from creation until it returns; the
 * other belongs to whoever owns the request (the lists while QUEUED/SENT, the BUSY
 * owner) and is dropped by req_end(), after the last use. The submitter always waits
 * for DONE before it unmaps and frees, so the page and mapping outlive every copy.
 *
 * Waits: the submitter's wait for DONE is bounded by the disk's io_timeout, counted
 * from the start of the segment (waits for a mapping slot included), and slept in
 * slices of at most USERBLK_WAIT_SLICE, so no hung-task warning is possible even when
 * the daemon is stopped for ever. When the time is up it takes a QUEUED or SENT request
 * itself and ends it with -EIO. A BUSY one it marks expired: its owner ends it when it
 * leaves BUSY, with the submitter's status whatever its copy did (the time was up: a
 * COMPLETE whose copy went through still fails the segment and gets -ENOENT, as for any
 * request that timed out), instead of handing it back or finishing it, and the
 * submitter looks again every USERBLK_BUSY_POLL (a request given back all the same
 * would be taken at the next look). So
 * every submitter returns within io_timeout plus one BUSY section, even when BUSY
 * owners keep handing the request back (a daemon whose buffer always faults) or the
 * daemon stops right after a GET_REQUEST.
 *
 * Atomic mode busy-waits instead (a kmap_atomic mapping is held, preemption is off) for
 * at most spin_timeout_ms (and io_timeout), then as above. A BUSY owner that was
 * preempted onto the spinner's CPU would never run again, so whoever owns an atomic
 * request runs with preemption disabled for the whole of BUSY, up to and including the
 * transition that ends it (BUSY -> DONE, or the give-back): an ioctl from req_own() to
 * busy_unpin(), fail_all around its take-and-end, the spinner itself (it holds
 * kmap_atomic). The ioctl's section starts inside dev->lock and outlives the
 * spin_unlock(), which is sound only where spinlock_t disables preemption itself: atomic
 * mode is refused on PREEMPT_RT. While the spinner runs, the owner so runs on another CPU
 * and leaves BUSY in bounded time. A traced atomic read's wait for the
 * daemon's "readx" is bounded the same way: COMPLETE claims req->xclaim and logs readx
 * with preemption disabled, or the submitter, after the spin limit, claims it first and
 * COMPLETE does not look through the mapping at all.
 *
 * atomic-sleep mode's submitter sleeps with preemption disabled (the bug): its waits are
 * the sleeping modes', bounded the same way, and nobody busy-waits for it. A kernel with
 * PREEMPT_COUNT resets the preemption count when it reports the sleep;
 * atomic_sleep_repair() raises it back before kunmap_atomic().
 *
 * Mapping slots (kmap mode): a disk holds at most USERBLK_KMAP_DISK_SLOTS of the
 * module's USERBLK_KMAP_SLOTS, and a segment that finds either pool empty does not wait:
 * it is served as in copier mode. A stalled daemon so never delays another disk.
 */

#include <linux/blkdev.h>
#include <linux/crc32.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/idr.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pagemap.h>
#include <linux/random.h>
#include <linux/refcount.h>
#include <linux/sched.h>
#include <linux/sched/clock.h>
#include <linux/semaphore.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "compat.h"
#include "uapi/userblk.h"

static const char * const mode_names[] = USERBLK_MODE_NAMES;

/* Read-only after load: the administrator's consent to the bug modes. */
static bool unsafe_modes;
module_param(unsafe_modes, bool, 0444);
MODULE_PARM_DESC(unsafe_modes,
		 "Allow map_mode atomic|local|atomic-sleep, which hand a CPU-local mapping to another thread (a deliberate bug, for testing; taints the kernel)");

static int map_mode = USERBLK_MAP_COPIER;
static bool userblk_loaded;	/* set at the end of init: map_mode is then checked at once */

/* mode_is_unsafe - atomic, local and atomic-sleep, the bug modes. Does not sleep. */
static bool mode_is_unsafe(int mode)
{
	return mode == USERBLK_MAP_ATOMIC || mode == USERBLK_MAP_LOCAL ||
	       mode == USERBLK_MAP_ATOMIC_SLEEP;
}

/* map_mode_set - parse map_mode=. Does not sleep. */
static int map_mode_set(const char *val, const struct kernel_param *kp)
{
	int i;

	for (i = USERBLK_MAP_ATOMIC; i < ARRAY_SIZE(mode_names); i++) {
		if (!sysfs_streq(val, mode_names[i]))
			continue;
		/* At load time unsafe_modes may come later on the line: init checks then. */
		if (READ_ONCE(userblk_loaded) && mode_is_unsafe(i) && !unsafe_modes) {
			pr_warn("userblk: map_mode=%s refused: load the module with unsafe_modes=1 to allow the bug modes\n",
				mode_names[i]);
			return -EPERM;
		}
		WRITE_ONCE(map_mode, i);
		return 0;
	}
	return -EINVAL;
}

/* map_mode_get - show map_mode. Does not sleep. */
static int map_mode_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", mode_names[READ_ONCE(map_mode)]);
}

static const struct kernel_param_ops map_mode_ops = {
	.set = map_mode_set,
	.get = map_mode_get,
};
module_param_cb(map_mode, &map_mode_ops, NULL, 0644);
MODULE_PARM_DESC(map_mode,
		 "How a segment's page reaches the daemon: kmap|copier (correct), atomic|local|atomic-sleep (the bug; need unsafe_modes=1). Default copier; a disk may choose its own at creation.");

static unsigned int io_timeout = 30;
module_param(io_timeout, uint, 0644);
MODULE_PARM_DESC(io_timeout, "Seconds a segment waits for the daemon before failing with -EIO (1-3600; a disk may set its own at creation)");

static unsigned int trace;
module_param(trace, uint, 0644);
MODULE_PARM_DESC(trace, "Trace lines: 0 off, 1 every transaction, N every Nth transaction");

#define USERBLK_MAX_SPIN_MS	10000	/* below the soft-lockup detector's 20 s */
static unsigned int spin_timeout_ms = 3000;
module_param(spin_timeout_ms, uint, 0644);
MODULE_PARM_DESC(spin_timeout_ms, "atomic mode: how long a submitter busy-waits for the daemon before failing the segment (at most 10000)");

static unsigned int max_spinners = 1;
module_param(max_spinners, uint, 0444);
MODULE_PARM_DESC(max_spinners, "atomic mode: submitters busy-waiting at once (more starve the daemon of CPU)");

#define USERBLK_MAX_PAUSE_MS	100
static unsigned int pause_ms = 2;
module_param(pause_ms, uint, 0644);
MODULE_PARM_DESC(pause_ms, "Pause before the submitter's last look (read3) at a traced read (at most 100)");

#define USERBLK_MAX_BUSY_DELAY_US	20000
static unsigned int busy_delay_us;
module_param(busy_delay_us, uint, 0644);
MODULE_PARM_DESC(busy_delay_us, "Testing: hold every BUSY section (a request being copied) this long, so tests can race COMPLETE, SHUTDOWN, close and the timeout against a copy (at most 20000)");

/* How long one sleep of a bounded wait lasts: far below the hung-task timeout. */
#define USERBLK_WAIT_SLICE	(5 * HZ)
/* How often a timed-out submitter looks again at a request that was BUSY. */
#define USERBLK_BUSY_POLL	(HZ / 10 ? HZ / 10 : 1)
/* How often a copy that hit the daemon's buffer is retried after faulting it in. */
#define USERBLK_COPY_TRIES	4
/* A request whose handed-over mapping faulted this often is failed. */
#define USERBLK_MAX_FAULTS	3

/*
 * kmap() slots a disk in kmap mode may hold while the daemon serves: each is held for
 * a whole service time, and the pkmap area is small (LAST_PKMAP entries, shared with
 * every other kmap() user).
 */
#ifdef CONFIG_HIGHMEM
#define USERBLK_KMAP_SLOTS	(LAST_PKMAP / 8)
#else
#define USERBLK_KMAP_SLOTS	64
#endif
/* A disk's share of them: a stalled daemon holds at most this many. */
#define USERBLK_KMAP_DISK_SLOTS	(USERBLK_KMAP_SLOTS / 4 ? USERBLK_KMAP_SLOTS / 4 : 1)
static struct semaphore kmap_slots;

/* The interleavings tests must reach (USERBLK_EV_*), counted for every disk. */
static const char * const event_names[] = USERBLK_EVENT_NAMES;
static atomic_long_t userblk_events[USERBLK_EV_COUNT];

/* userblk_count - count one event. Does not sleep. */
static void userblk_count(int ev)
{
	atomic_long_inc(&userblk_events[ev]);
}

/* A traced read's readx (req->xclaim): who got there first. */
#define XCLAIM_OPEN	0	/* neither yet */
#define XCLAIM_DAEMON	1	/* COMPLETE logs readx through the mapping */
#define XCLAIM_GONE	2	/* the submitter stopped waiting: nobody may look */

enum req_state {
	REQ_QUEUED,
	REQ_SENT,
	REQ_BUSY,
	REQ_DONE,
};

struct userblk_req {
	struct list_head node;		/* on dev->queued or dev->sent */
	struct list_head busy_node;	/* on dev->busy while an ioctl owns it (BUSY) */
	refcount_t ref;
	u64 xid;
	u64 pos;
	u32 len;
	u32 op;
	struct page *page;
	unsigned int offset;
	void *addr;		/* submitter's mapping; NULL in copier mode */
	int mode;
	enum req_state state;	/* changed under dev->lock, except BUSY -> DONE */
	int status;
	int expired;		/* under dev->lock: the timeout found it BUSY; its status */
	bool traced;
	int faults;		/* failed copies through the handed-over address */
	struct completion done;	/* sleeping submitters */
	int done_flag;		/* busy-waiting submitters (atomic mode) */
	struct completion seen;	/* submitter logged read2: daemon may log readx */
	struct completion xdone; /* daemon logged readx: submitter may unmap */
	int xdone_flag;
	atomic_t xclaim;	/* XCLAIM_*: atomic mode's bounded wait for readx */
};

struct userblk_dev {
	struct gendisk *disk;
	int index;
	int mode;
	u32 dev_id;			/* random; dev= in trace lines */
	unsigned long timeout;		/* io_timeout, in jiffies */
	spinlock_t lock;		/* protects the lists, dead and req->state */
	struct list_head queued;
	struct list_head sent;
	struct list_head busy;		/* requests an ioctl owns (bookkeeping only) */
	wait_queue_head_t wq;		/* GET_REQUEST waits here */
	bool dead;
	atomic64_t next_xid;
	atomic_t timeouts;		/* segments failed by io_timeout */
	struct semaphore spinners;	/* atomic mode: leave one CPU for the daemon */
	struct semaphore kmap_slots;	/* kmap mode: this disk's share of kmap_slots */
	int daemon_cpu;			/* where GET_REQUEST last ran; -1 unknown */
};

/* One per open of the control device. */
struct userblk_ctl {
	struct mutex lock;		/* serialises CREATE */
	struct userblk_dev *ub;		/* published with smp_store_release() */
};

static DEFINE_IDA(userblk_ida);

/* mode_name - a mode's name for the log. Does not sleep. */
static const char *mode_name(int mode)
{
	return mode > 0 && mode < ARRAY_SIZE(mode_names) ? mode_names[mode] : "?";
}

/* userblk_crc - crc32 (IEEE) of len bytes at p. Does not sleep. */
static u32 userblk_crc(const void *p, u32 len)
{
	return crc32_le(~0, p, len) ^ ~0;
}

/*
 * userblk_trace_line - print one trace line. Does not sleep; callable with a
 * kmap_atomic mapping held. This is the only function that prints trace lines; the
 * format below is the contract kmodlab's trace parser (lab/trace) implements:
 *
 *   userblk<N>: <op> <xid> <pos> <len> <crc> <addr> <tid> cpu=<cpu> mode=<mode> dev=<dev>[ side=<side>]
 *
 *   N     the disk's index (/dev/userblkN), decimal
 *   op    write, write1, write2, read0, read1, read2, readx, read3, rfault, wfault; padded with
 *         spaces to 6 columns (columns are separated by one or more spaces)
 *   xid   the transaction id, %08llx (sequential per disk, from 1)
 *   pos   byte offset on the disk, %016llx
 *   len   bytes, %016llx
 *   crc   crc32 (IEEE, as Go's crc32.ChecksumIEEE) of the len bytes seen at addr,
 *         %016x; for rfault/wfault the number of bytes NOT copied instead
 *   addr  the kernel address read through: raw (%px) only when unsafe_modes=1, else
 *         the kernel's hashed %p
 *   tid   the printing thread, %d
 *   cpu   the CPU it ran on, decimal
 *   mode  the request's map mode name (atomic, local, kmap, copier, atomic-sleep)
 *   dev   the disk instance's random id, %08x (also in the "created" line), so two
 *         disks, also across module reloads, never share an xid space
 *   side  rfault/wfault only: "kernel" when the handed-over mapping faulted, "user"
 *         when the daemon's buffer did
 *
 * Events: write (submitter, before queueing), write1 (daemon, after copying it out),
 * write2 (submitter, after the daemon's copy, before unmapping: tells a stale mapping,
 * where the submitter still sees what it wrote, from a page the filesystem changed
 * while it was under I/O, where both threads see the new bytes); read0 (submitter, before queueing), read1 (daemon, after copying data in), read2
 * (submitter, after waking), readx (daemon, after read2), read3 (submitter, after
 * pause_ms, before unmapping).
 */
static void userblk_trace_line(struct userblk_dev *ub, struct userblk_req *req,
			       const char *op, const void *addr, u64 crc, const char *side)
{
	const char *sp = side ? " side=" : "";

	if (!side)
		side = "";
	if (unsafe_modes)
		pr_info("userblk%d: %-6s %08llx %016llx %016llx %016llx %px %d cpu=%d mode=%s dev=%08x%s%s\n",
			ub->index, op, req->xid, req->pos, (u64)req->len, crc, addr,
			task_pid_nr(current), raw_smp_processor_id(), mode_name(req->mode),
			ub->dev_id, sp, side);
	else
		pr_info("userblk%d: %-6s %08llx %016llx %016llx %016llx %p %d cpu=%d mode=%s dev=%08x%s%s\n",
			ub->index, op, req->xid, req->pos, (u64)req->len, crc, addr,
			task_pid_nr(current), raw_smp_processor_id(), mode_name(req->mode),
			ub->dev_id, sp, side);
}

/*
 * userblk_trace - trace an event with the crc of the segment's bytes: through the
 * handed-over mapping if there is one, else through a short-lived mapping of our own
 * (copier mode). Does not sleep.
 */
static void userblk_trace(struct userblk_dev *ub, struct userblk_req *req, const char *op)
{
	void *p;

	if (req->addr) {
		userblk_trace_line(ub, req, op, req->addr, userblk_crc(req->addr, req->len), NULL);
		return;
	}
	p = kmap_local_page(req->page) + req->offset;
	userblk_trace_line(ub, req, op, p, userblk_crc(p, req->len), NULL);
	kunmap_local(p);
}

/*
 * userblk_trace_fault - a copy came up @left bytes short and could not be healed: the
 * "short copy" evidence. @side says which side faulted. Does not sleep.
 */
static void userblk_trace_fault(struct userblk_dev *ub, struct userblk_req *req,
				const char *op, const void *addr, unsigned long left,
				const char *side)
{
	if (req->traced)
		userblk_trace_line(ub, req, op, addr, left, side);
	else
		pr_warn_ratelimited("userblk%d: %s: %lu of %u bytes not copied (%s side faulted, mode %s)\n",
				    ub->index, op, left, req->len, side, mode_name(req->mode));
}

/* req_put - drop a reference; the last one frees. Does not sleep. */
static void req_put(struct userblk_req *req)
{
	if (refcount_dec_and_test(&req->ref))
		kfree(req);
}

/*
 * req_queue - (new) -> QUEUED. Returns false if the disk is dead (the request was not
 * queued and the owner's reference is dropped). Does not sleep.
 */
static bool req_queue(struct userblk_dev *ub, struct userblk_req *req)
{
	spin_lock(&ub->lock);
	if (ub->dead) {
		spin_unlock(&ub->lock);
		refcount_dec(&req->ref);	/* the lists' reference; ours remains */
		return false;
	}
	req->state = REQ_QUEUED;
	list_add_tail(&req->node, &ub->queued);
	spin_unlock(&ub->lock);
	wake_up(&ub->wq);
	return true;
}

/*
 * req_take - QUEUED or SENT -> BUSY for a path that ends the request at once (fail_all,
 * the submitter's timeout): the caller becomes the only owner, with the owner's
 * reference. Called with dev->lock held. Does not sleep.
 */
static void req_take(struct userblk_dev *ub, struct userblk_req *req)
{
	lockdep_assert_held(&ub->lock);
	list_del_init(&req->node);
	req->state = REQ_BUSY;
}

/*
 * req_own - QUEUED or SENT -> BUSY for an ioctl that copies (GET_REQUEST, COMPLETE):
 * as req_take(), and the request goes on dev->busy. An atomic-mode request's owner runs
 * with preemption disabled from here until the request has left BUSY (busy_unpin(), the
 * last step of req_end_busy(), req_finish_busy() and req_give_back()): its submitter
 * busy-waits with preemption off and must never wait for an owner preempted on its CPU.
 * The preempt_disable() is taken inside dev->lock and outlives its spin_unlock(): on
 * !PREEMPT_RT spin_lock() disables preemption itself, so this only extends that section
 * to the end of BUSY (atomic mode is refused on PREEMPT_RT, see userblk_create()).
 * Called with dev->lock held. Does not sleep.
 */
static void req_own(struct userblk_dev *ub, struct userblk_req *req)
{
	req_take(ub, req);
	list_add(&req->busy_node, &ub->busy);
	if (req->mode == USERBLK_MAP_ATOMIC)
		preempt_disable();
}

/*
 * req_disown - the ioctl's copy is over: off dev->busy (the request stays BUSY, and
 * preemption stays as req_own() left it, until the caller gives it back or ends it).
 * Returns the expired status (0: not expired). Called with dev->lock held. Does not
 * sleep.
 */
static int req_disown(struct userblk_dev *ub, struct userblk_req *req)
{
	lockdep_assert_held(&ub->lock);
	list_del_init(&req->busy_node);
	return req->expired;
}

/*
 * busy_unpin - the end of an ioctl's BUSY section: undo req_own()'s preempt_disable()
 * for a request of @mode (read before the request left BUSY: it may be freed now).
 * Does not sleep.
 */
static void busy_unpin(int mode)
{
	if (mode == USERBLK_MAP_ATOMIC)
		preempt_enable();
}

/*
 * userblk_busy_delay - testing only (busy_delay_us): hold a BUSY section open so that
 * COMPLETE, SHUTDOWN, close and the timeout can race it. Does not sleep (it may run with
 * preemption disabled).
 */
static void userblk_busy_delay(void)
{
	unsigned int us = min_t(unsigned int, READ_ONCE(busy_delay_us), USERBLK_MAX_BUSY_DELAY_US);

	if (!us)
		return;
	mdelay(us / 1000);
	udelay(us % 1000);
}

/*
 * req_finish - BUSY -> DONE: make the status final and wake the submitter. The caller
 * keeps the owner's reference (a traced read still logs readx); req_release() drops
 * it. Does not sleep.
 */
static void req_finish(struct userblk_req *req, int status)
{
	req->status = status;
	WRITE_ONCE(req->state, REQ_DONE);
	smp_store_release(&req->done_flag, 1);
	complete(&req->done);
}

/* req_release - the owner is done with a DONE request: let the submitter unmap. Does not sleep. */
static void req_release(struct userblk_req *req)
{
	smp_store_release(&req->xdone_flag, 1);
	complete(&req->xdone);
	req_put(req);
}

/* req_end - BUSY -> DONE, owner's last word. Does not sleep. */
static void req_end(struct userblk_req *req, int status)
{
	req_finish(req, status);
	req_release(req);
}

/* req_end_busy - an ioctl ends the request it owns (req_own()). Does not sleep. */
static void req_end_busy(struct userblk_dev *ub, struct userblk_req *req, int status)
{
	int mode = req->mode;

	spin_lock(&ub->lock);
	req_disown(ub, req);
	spin_unlock(&ub->lock);
	req_end(req, status);
	busy_unpin(mode);
}

/*
 * req_note_timeout - log a disk's first timeout, count them all. The caller still holds
 * a reference to @req (it reads the xid). Does not sleep.
 */
static void req_note_timeout(struct userblk_dev *ub, struct userblk_req *req, int status)
{
	if (atomic_inc_return(&ub->timeouts) == 1)
		pr_warn("userblk%d: segment %08llx waited %s for the daemon: failing it (%d); further timeouts are only counted\n",
			ub->index, req->xid,
			req->mode == USERBLK_MAP_ATOMIC ? "spin_timeout_ms" : "io_timeout", status);
}

/*
 * req_finish_busy - COMPLETE finishes the request it owns (req_own()) with @status,
 * keeping the owner's reference for readx (req_release() drops it), and returns 0. If
 * the submitter's timeout found it BUSY meanwhile, it ends it with the submitter's
 * status instead, whatever the copy did, and returns -ETIMEDOUT: the submitter's time
 * was up, so its segment fails, and the daemon hears so (-ENOENT, as for any request
 * that timed out), never that the data it just handed over landed. Does not sleep.
 */
static int req_finish_busy(struct userblk_dev *ub, struct userblk_req *req, int status)
{
	int mode = req->mode;
	int expired;

	spin_lock(&ub->lock);
	expired = req_disown(ub, req);
	spin_unlock(&ub->lock);
	if (expired) {
		req_note_timeout(ub, req, expired);
		req_end(req, expired);
		busy_unpin(mode);
		return -ETIMEDOUT;
	}
	req_finish(req, status);
	busy_unpin(mode);
	return 0;
}

/*
 * req_give_back - an ioctl is done with the request it owns (req_own()): BUSY -> @to
 * (QUEUED at the head, or SENT). If the disk died meanwhile, it ends it with -EIO
 * instead and returns -ESHUTDOWN; if the submitter's timeout found it BUSY, it ends it
 * with the submitter's status and returns -ETIMEDOUT. Returns 0 when given back. Does
 * not sleep.
 */
static int req_give_back(struct userblk_dev *ub, struct userblk_req *req, enum req_state to)
{
	int mode = req->mode;
	int expired;

	spin_lock(&ub->lock);
	expired = req_disown(ub, req);
	if (ub->dead) {
		spin_unlock(&ub->lock);
		userblk_count(USERBLK_EV_DEAD_BUSY);
		req_end(req, -EIO);
		busy_unpin(mode);
		return -ESHUTDOWN;
	}
	if (expired) {
		spin_unlock(&ub->lock);
		/* The owner's reference keeps req alive until req_end() drops it. */
		req_note_timeout(ub, req, expired);
		req_end(req, expired);
		busy_unpin(mode);
		return -ETIMEDOUT;
	}
	req->state = to;
	if (to == REQ_QUEUED)
		list_add(&req->node, &ub->queued);
	else
		list_add_tail(&req->node, &ub->sent);
	spin_unlock(&ub->lock);
	busy_unpin(mode);
	if (to == REQ_QUEUED)
		wake_up(&ub->wq);
	return 0;
}

/*
 * req_timeout - the submitter's time is up: take the request if nobody owns it and end
 * it with @status, returning true. A BUSY request is marked expired instead, so that its
 * owner ends it with @status rather than hand it back; false is returned for it and for
 * a DONE one. Does not sleep.
 */
static bool req_timeout(struct userblk_dev *ub, struct userblk_req *req, int status)
{
	enum req_state state;

	spin_lock(&ub->lock);
	/* BUSY -> DONE happens without the lock: DONE may show up at any time. */
	state = READ_ONCE(req->state);
	if (state == REQ_QUEUED || state == REQ_SENT) {
		req_take(ub, req);
		spin_unlock(&ub->lock);
		userblk_count(state == REQ_SENT ? USERBLK_EV_TIMEOUT_SENT : USERBLK_EV_TIMEOUT_QUEUED);
		req_note_timeout(ub, req, status);
		req_end(req, status);
		return true;
	}
	if (state == REQ_BUSY && !req->expired) {
		req->expired = status;
		userblk_count(USERBLK_EV_TIMEOUT_BUSY);
	}
	spin_unlock(&ub->lock);
	return false;
}

/*
 * userblk_wait_slices - wait for @c until jiffies reaches @end, in slices short enough
 * that the hung-task detector sees the task wake. Returns true once @c completed.
 * Sleeps (uninterruptibly: the bio may be shared, a signal must not fail it).
 */
static bool userblk_wait_slices(struct completion *c, unsigned long end)
{
	for (;;) {
		long left = (long)(end - jiffies);

		if (left <= 0)
			return false;
		if (wait_for_completion_timeout(c, min_t(long, left, USERBLK_WAIT_SLICE)))
			return true;
	}
}

/* userblk_down - down(@sem) before jiffies reaches @end, in slices. Sleeps. */
static int userblk_down(struct semaphore *sem, unsigned long end)
{
	for (;;) {
		long left = (long)(end - jiffies);

		if (left <= 0)
			return -EIO;
		if (!down_timeout(sem, min_t(long, left, USERBLK_WAIT_SLICE)))
			return 0;
	}
}

/*
 * req_wait_done - the submitter's wait for its segment, until jiffies reaches @end (the
 * segment's io_timeout) and then at most one BUSY section longer. Sleeps, except in
 * atomic mode, where a kmap_atomic mapping is held and the submitter busy-waits for at
 * most spin_timeout_ms. The original driver slept here with the mapping held; that is
 * atomic-sleep mode, which sleeps as the others do (on a HIGHMEM 6.x kernel the sleep
 * also tears the mapping down under the daemon: kmap_local's sched-out clears it).
 */
static int req_wait_done(struct userblk_dev *ub, struct userblk_req *req, unsigned long end)
{
	unsigned int spin_ms;
	long left;
	u64 deadline;

	if (req->mode != USERBLK_MAP_ATOMIC) {
		if (userblk_wait_slices(&req->done, end))
			return req->status;
		/*
		 * Timed out. A QUEUED or SENT request is ours to end. A BUSY one's owner
		 * copies without sleeping on user memory, then either ends it or gives it
		 * back (a copy that hit the daemon's buffer, a COMPLETE to retry). It is now
		 * marked expired, so giving it back ends it instead; and were it given back
		 * all the same, it would be QUEUED or SENT again and ours at the next look.
		 * So look again every USERBLK_BUSY_POLL until one of these happens.
		 */
		while (!req_timeout(ub, req, -EIO)) {
			if (wait_for_completion_timeout(&req->done, USERBLK_BUSY_POLL))
				return req->status;
		}
		return -EIO;
	}
	/*
	 * local_clock(), not jiffies: while we spin, another CPU may sit in stop_machine()
	 * with interrupts off waiting for us, and jiffies would never reach the deadline.
	 */
	spin_ms = clamp_t(unsigned int, READ_ONCE(spin_timeout_ms), 1, USERBLK_MAX_SPIN_MS);
	left = (long)(end - jiffies);
	spin_ms = min_t(unsigned int, spin_ms, left > 0 ? jiffies_to_msecs(left) : 1);
	deadline = local_clock() + (u64)spin_ms * NSEC_PER_MSEC;
	while (!smp_load_acquire(&req->done_flag)) {
		if (local_clock() > deadline && req_timeout(ub, req, -ETIMEDOUT))
			return -ETIMEDOUT;
		/*
		 * else BUSY (now expired) or DONE: its owner runs with preemption disabled,
		 * so on another CPU, and ends it within one BUSY section.
		 */
		cpu_relax();
	}
	return req->status;
}

/*
 * userblk_map - make the mapping the request's mode hands over (none in copier mode),
 * waiting at most until jiffies reaches @end. May sleep (all modes but atomic and
 * atomic-sleep, which return with preemption disabled).
 */
static int userblk_map(struct userblk_dev *ub, struct userblk_req *req, unsigned long end)
{
	void *base = NULL;
	int err;

	/*
	 * Busy-waiting on the CPU the daemon is pinned to would wait for ever: such a
	 * submitter (a kworker doing writeback, say) takes the global mapping instead.
	 */
	if (req->mode == USERBLK_MAP_ATOMIC &&
	    (READ_ONCE(ub->daemon_cpu) < 0 || raw_smp_processor_id() == READ_ONCE(ub->daemon_cpu)))
		req->mode = USERBLK_MAP_KMAP;	/* also while we do not know where it runs */
	if (req->mode == USERBLK_MAP_ATOMIC) {
		err = userblk_down(&ub->spinners, end);
		if (err)
			return err;
		base = kmap_atomic(req->page);	/* CPU-local; preemption off */
		if (smp_processor_id() != READ_ONCE(ub->daemon_cpu))
			goto out;
		/* migrated onto the daemon's CPU meanwhile */
		kunmap_atomic(base);
		up(&ub->spinners);
		req->mode = USERBLK_MAP_KMAP;
	}
	switch (req->mode) {
	case USERBLK_MAP_ATOMIC_SLEEP:
		/* CPU-local, preemption off: and the submitter will sleep holding it */
		base = kmap_atomic(req->page);
		break;
	case USERBLK_MAP_LOCAL:
		base = kmap_local_page(req->page);	/* CPU- and task-local */
		break;
	case USERBLK_MAP_KMAP:
		/*
		 * Never wait for a slot: a slot is held for a whole service time, up to
		 * io_timeout when the daemon stalls. With this disk's share or the module's
		 * pool used up, the daemon's ioctl maps the page itself (copier), which is as
		 * correct.
		 */
		if (down_trylock(&ub->kmap_slots)) {
			req->mode = USERBLK_MAP_COPIER;
			break;
		}
		if (down_trylock(&kmap_slots)) {
			up(&ub->kmap_slots);
			req->mode = USERBLK_MAP_COPIER;
			break;
		}
		base = kmap(req->page);		/* global: valid on every CPU */
		break;
	}
out:
	if (base)
		req->addr = base + req->offset;
	return 0;
}

/* userblk_unmap - undo userblk_map(). Does not sleep. */
static void userblk_unmap(struct userblk_dev *ub, struct userblk_req *req)
{
	if (!req->addr)
		return;
	switch (req->mode) {
	case USERBLK_MAP_ATOMIC:
		kunmap_atomic(req->addr - req->offset);
		up(&ub->spinners);
		break;
	case USERBLK_MAP_ATOMIC_SLEEP:
		kunmap_atomic(req->addr - req->offset);
		break;
	case USERBLK_MAP_LOCAL:
		kunmap_local(req->addr - req->offset);
		break;
	case USERBLK_MAP_KMAP:
		kunmap(req->page);
		up(&kmap_slots);
		up(&ub->kmap_slots);
		break;
	}
}

/*
 * userblk_wait_readx - a traced read: wait until the daemon's COMPLETE has taken its
 * second look through our mapping (readx) or will not take it. Sleeps, except in
 * atomic mode, which busy-waits at most spin_timeout_ms and then stops COMPLETE from
 * looking (XCLAIM_GONE) unless it already claimed the look, which it then finishes with
 * preemption disabled, on another CPU.
 */
static void userblk_wait_readx(struct userblk_req *req)
{
	u64 deadline;

	if (req->mode != USERBLK_MAP_ATOMIC) {
		/* COMPLETE releases it after waiting at most a second for "seen". */
		wait_for_completion(&req->xdone);
		return;
	}
	deadline = local_clock() +
		   (u64)clamp_t(unsigned int, READ_ONCE(spin_timeout_ms), 1, USERBLK_MAX_SPIN_MS) * NSEC_PER_MSEC;
	/* Pairs with req_release(): once set, COMPLETE's readx is over. */
	while (!smp_load_acquire(&req->xdone_flag)) {
		if (local_clock() > deadline &&
		    atomic_cmpxchg(&req->xclaim, XCLAIM_OPEN, XCLAIM_GONE) == XCLAIM_OPEN)
			return;
		cpu_relax();
	}
}

/*
 * atomic_sleep_repair - atomic-sleep mode slept (waiting for the daemon, for its readx,
 * in the pause) with the preemption count kmap_atomic() raised to @pc. A kernel that
 * counts preemption said "scheduling while atomic" at the first sleep and, to carry on,
 * reset the count; raise it back so that kunmap_atomic() balances, rather than leave
 * the CPU's count below zero (and every later schedule() of it reported). Without
 * PREEMPT_COUNT the count never moved and this does nothing. Does not sleep.
 */
static void atomic_sleep_repair(int pc)
{
	while (preempt_count() < pc)
		preempt_disable();
}

/*
 * userblk_segment - hand one segment to the daemon and wait for it, at most the disk's
 * io_timeout from now (and one BUSY section). May sleep (all modes but atomic, which
 * busy-waits while holding kmap_atomic; atomic-sleep sleeps holding it, the bug).
 */
static int userblk_segment(struct userblk_dev *ub, int op, u64 pos, struct bio_vec *bv)
{
	unsigned int every = READ_ONCE(trace);
	unsigned long end = jiffies + ub->timeout;
	struct userblk_req *req;
	bool write = op == USERBLK_OP_WRITE;
	int ret, pc;

	req = kzalloc(sizeof(*req), GFP_NOIO);
	if (!req)
		return -ENOMEM;
	refcount_set(&req->ref, 2);	/* the submitter + the owner (lists, then BUSY owner) */
	INIT_LIST_HEAD(&req->node);
	INIT_LIST_HEAD(&req->busy_node);
	atomic_set(&req->xclaim, XCLAIM_OPEN);
	init_completion(&req->done);
	init_completion(&req->seen);
	init_completion(&req->xdone);
	req->xid = atomic64_inc_return(&ub->next_xid);
	req->pos = pos;
	req->len = bv->bv_len;
	req->op = op;
	req->page = bv->bv_page;
	req->offset = bv->bv_offset;
	req->mode = ub->mode;
	req->traced = every && ((u32)req->xid % every) == 0;

	ret = userblk_map(ub, req, end);
	if (ret) {
		req_put(req);
		req_put(req);
		return ret;
	}
	pc = preempt_count();	/* atomic-sleep: what kmap_atomic() left, see below */
	if (req->traced)
		userblk_trace(ub, req, write ? "write" : "read0");

	if (!req_queue(ub, req)) {
		ret = -EIO;
		goto out_unmap;
	}
	ret = req_wait_done(ub, req, end);

	if (req->traced && write && ret == 0)
		userblk_trace(ub, req, "write2");
	if (req->traced && !write && ret == 0) {
		unsigned int pause = min_t(unsigned int, READ_ONCE(pause_ms), USERBLK_MAX_PAUSE_MS);

		userblk_trace(ub, req, "read2");
		complete(&req->seen);
		/*
		 * Wait for the daemon's second look, which reads through our mapping: we must
		 * not unmap before it is done (or will not happen).
		 */
		userblk_wait_readx(req);
		if (req->mode == USERBLK_MAP_ATOMIC)
			mdelay(pause);
		else
			msleep(pause);
		userblk_trace(ub, req, "read3");
	}

out_unmap:
	if (req->mode == USERBLK_MAP_ATOMIC_SLEEP)
		atomic_sleep_repair(pc);
	userblk_unmap(ub, req);
	req_put(req);
	return ret;
}

/*
 * userblk_submit_bio - serve a bio segment by segment through the daemon.
 * Runs in the submitter's context and may sleep (see userblk_segment).
 */
static void userblk_submit_bio(struct bio *bio)
{
	struct userblk_dev *ub = bio->bi_bdev->bd_disk->private_data;
	u64 pos = (u64)bio->bi_iter.bi_sector << SECTOR_SHIFT;
	struct bvec_iter iter;
	struct bio_vec bv;
	unsigned int done = 0;
	int op, err = 0;

	switch (bio_op(bio)) {
	case REQ_OP_READ:
		op = USERBLK_OP_READ;
		break;
	case REQ_OP_WRITE:
		op = USERBLK_OP_WRITE;
		break;
	case REQ_OP_FLUSH:
		bio_endio(bio);
		return;
	default:
		bio->bi_status = BLK_STS_NOTSUPP;
		bio_endio(bio);
		return;
	}
	bio_for_each_segment(bv, bio, iter) {
		err = userblk_segment(ub, op, pos, &bv);
		if (err)
			break;
		pos += bv.bv_len;
		done++;
	}
	if (bio_segments(bio) > 1) {
		userblk_count(USERBLK_EV_MULTISEG_BIO);
		if (err && done)
			userblk_count(USERBLK_EV_MIDBIO_ERROR);
	}
	if (err)
		bio->bi_status = err == -ETIMEDOUT ? BLK_STS_TIMEOUT : BLK_STS_IOERR;
	bio_endio(bio);
}

static const struct block_device_operations userblk_fops = {
	.owner		= THIS_MODULE,
	.submit_bio	= userblk_submit_bio,
};

/*
 * userblk_fail_all - fail every QUEUED and SENT request and wake everyone: the daemon
 * is gone or shutting down. A BUSY request's owner sees dead and ends it itself.
 * The requests it takes are BUSY (its own) until it ends them: it does so with
 * preemption disabled, as an ioctl's BUSY section in atomic mode, because an atomic
 * submitter past its spin limit busy-waits for them. Does not sleep.
 */
static void userblk_fail_all(struct userblk_dev *ub)
{
	struct userblk_req *req, *tmp;
	LIST_HEAD(victims);

	preempt_disable();
	spin_lock(&ub->lock);
	ub->dead = true;
	list_for_each_entry_safe(req, tmp, &ub->queued, node) {
		req_take(ub, req);
		list_add_tail(&req->node, &victims);
	}
	list_for_each_entry_safe(req, tmp, &ub->sent, node) {
		req_take(ub, req);
		list_add_tail(&req->node, &victims);
	}
	spin_unlock(&ub->lock);
	list_for_each_entry_safe(req, tmp, &victims, node) {
		list_del_init(&req->node);
		req_end(req, -EIO);
	}
	preempt_enable();
	wake_up_all(&ub->wq);
}

/* userblk_create - make /dev/userblkN for this control fd (at most one). May sleep. */
static long userblk_create(struct userblk_ctl *ctl, struct userblk_create __user *uarg)
{
	struct userblk_create c;
	struct userblk_dev *ub;
	unsigned int tmo;
	int mode, err;

	if (copy_from_user(&c, uarg, sizeof(c)))
		return -EFAULT;
	if (!c.size || c.size % 4096 || c.size > USERBLK_MAX_SIZE ||
	    c.map_mode >= ARRAY_SIZE(mode_names) || c.io_timeout > USERBLK_MAX_IO_TIMEOUT)
		return -EINVAL;
	mode = c.map_mode ? c.map_mode : READ_ONCE(map_mode);
	if (mode_is_unsafe(mode) && !unsafe_modes) {
		pr_warn_ratelimited("userblk: map_mode=%s refused: it hands a CPU-local mapping to another thread; load the module with unsafe_modes=1 to allow it\n",
				    mode_name(mode));
		return -EPERM;
	}
	if (IS_ENABLED(CONFIG_PREEMPT_RT) && mode == USERBLK_MAP_ATOMIC) {
		/* spinlock_t sleeps there: req_own()'s preemption section would sleep in it */
		pr_warn_ratelimited("userblk: map_mode=atomic is not supported on PREEMPT_RT kernels\n");
		return -EOPNOTSUPP;
	}
	tmo = c.io_timeout ? c.io_timeout : clamp_t(unsigned int, READ_ONCE(io_timeout), 1, USERBLK_MAX_IO_TIMEOUT);

	err = mutex_lock_killable(&ctl->lock);
	if (err)
		return err;
	if (ctl->ub) {
		err = -EBUSY;
		goto out_unlock;
	}
	ub = kzalloc(sizeof(*ub), GFP_KERNEL);
	if (!ub) {
		err = -ENOMEM;
		goto out_unlock;
	}
	spin_lock_init(&ub->lock);
	INIT_LIST_HEAD(&ub->queued);
	INIT_LIST_HEAD(&ub->sent);
	INIT_LIST_HEAD(&ub->busy);
	init_waitqueue_head(&ub->wq);
	atomic64_set(&ub->next_xid, 0);
	atomic_set(&ub->timeouts, 0);
	ub->mode = mode;
	ub->timeout = (unsigned long)tmo * HZ;
	ub->dev_id = get_random_u32();
	sema_init(&ub->spinners, clamp_t(int, max_spinners, 1, max(1, (int)num_online_cpus() - 1)));
	sema_init(&ub->kmap_slots, USERBLK_KMAP_DISK_SLOTS);
	ub->daemon_cpu = -1;

	ub->index = ida_alloc(&userblk_ida, GFP_KERNEL);
	if (ub->index < 0) {
		err = ub->index;
		goto out_free_dev;
	}
	ub->disk = userblk_alloc_disk();
	if (IS_ERR(ub->disk)) {
		err = PTR_ERR(ub->disk);
		goto out_free_index;
	}
	ub->disk->fops = &userblk_fops;
	ub->disk->private_data = ub;
	ub->disk->flags |= GENHD_FL_NO_PART;
	snprintf(ub->disk->disk_name, DISK_NAME_LEN, "userblk%d", ub->index);
	set_capacity(ub->disk, c.size >> SECTOR_SHIFT);
	err = add_disk(ub->disk);
	if (err)
		goto out_put_disk;
	__module_get(THIS_MODULE);	/* the disk's: dropped in userblk_release() */

	if (mode_is_unsafe(mode)) {
		pr_warn("userblk%d: map_mode=%s hands a CPU-local mapping to another thread (a deliberate bug, allowed by unsafe_modes=1): tainting the kernel\n",
			ub->index, mode_name(mode));
		add_taint(TAINT_USER, LOCKDEP_STILL_OK);
	}
	pr_info("userblk%d: created, %llu bytes, map_mode=%s dev=%08x\n", ub->index, c.size,
		mode_name(mode), ub->dev_id);
	/* The disk is complete: publish it to the other ioctls of this fd. */
	smp_store_release(&ctl->ub, ub);
	mutex_unlock(&ctl->lock);

	c.index = ub->index;
	c.io_timeout = tmo;
	c.dev_id = ub->dev_id;
	if (copy_to_user(uarg, &c, sizeof(c)))
		return -EFAULT;	/* the disk exists; the fd still serves it */
	return 0;

out_put_disk:
	put_disk(ub->disk);
out_free_index:
	ida_free(&userblk_ida, ub->index);
out_free_dev:
	kfree(ub);
out_unlock:
	mutex_unlock(&ctl->lock);
	return err;
}

/*
 * userblk_copy - move a segment's data between the request and the daemon's buffer:
 * to the daemon (to_user, a write's data) or from it (a read's data). Through the
 * submitter's mapping (atomic, local, kmap; the bug when that mapping is CPU-local)
 * or through our own (copier). Runs in the daemon's thread, with the request BUSY
 * (so req->addr, page and offset are ours to read), with page faults disabled:
 * returns the bytes not copied (all of them for a buffer outside user space). Does
 * not sleep.
 */
static unsigned long userblk_copy(struct userblk_req *req, void __user *ubuf, bool to_user)
{
	void *buf = req->addr, *p = NULL;
	unsigned long left;

	/* The _inatomic copies neither check the range nor zero a short copy's tail. */
	if (!access_ok(ubuf, req->len))
		return req->len;
	pagefault_disable();
	if (!buf) {
		p = kmap_local_page(req->page);
		buf = p + req->offset;
	}
	if (to_user)
		left = __copy_to_user_inatomic(ubuf, buf, req->len);
	else
		left = __copy_from_user_inatomic(buf, ubuf, req->len);
	if (p)
		kunmap_local(p);
	pagefault_enable();
	return left;
}

/*
 * user_side_faults - after a short copy, which side faulted? Probe the daemon's buffer
 * at the offset where the copy stopped with a one-byte copy to or from a bounce byte:
 * if that faults too, it was the user buffer (perhaps only not present yet), else the
 * kernel mapping. Does not sleep.
 */
static bool user_side_faults(void __user *ubuf, u32 len, unsigned long left, bool to_user)
{
	char __user *at = (char __user *)ubuf + (len - left);
	unsigned long n;
	char bounce = 0;

	if (!access_ok(at, 1))
		return true;
	pagefault_disable();
	if (to_user)
		n = __copy_to_user_inatomic(at, &bounce, 1);
	else
		n = __copy_from_user_inatomic(&bounce, at, 1);
	pagefault_enable();
	return n != 0;
}

/*
 * userblk_get_request - block until a segment is pending and describe it (and copy a
 * write's data out). May sleep (waiting for work, faulting the daemon's buffer in).
 */
static long userblk_get_request(struct userblk_dev *ub, struct userblk_request __user *uarg)
{
	struct userblk_request r;
	struct userblk_req *req;
	void __user *ubuf;
	unsigned long left;
	int tries = 0;
	u32 flags;
	int err;

	if (copy_from_user(&r, uarg, sizeof(r)))
		return -EFAULT;
	if (r.flags & ~USERBLK_GET_NOWAIT)
		return -EINVAL;
	flags = r.flags;
	ubuf = u64_to_user_ptr(r.buf);
again:
	for (;;) {
		if (flags & USERBLK_GET_NOWAIT) {
			if (list_empty(&ub->queued) && !READ_ONCE(ub->dead))
				return -EAGAIN;
		} else {
			err = wait_event_interruptible(ub->wq, !list_empty(&ub->queued) || READ_ONCE(ub->dead));
			if (err)
				return err;
		}
		spin_lock(&ub->lock);
		if (ub->dead) {
			spin_unlock(&ub->lock);
			return -ESHUTDOWN;
		}
		req = list_first_entry_or_null(&ub->queued, struct userblk_req, node);
		if (req)
			break;
		spin_unlock(&ub->lock);	/* another worker took it */
		if (flags & USERBLK_GET_NOWAIT)
			return -EAGAIN;
	}
	if (req->op == USERBLK_OP_WRITE && r.buf_len < req->len) {
		spin_unlock(&ub->lock);
		return -EINVAL;	/* left queued: a bigger buffer can take it */
	}
	req_own(ub, req);
	spin_unlock(&ub->lock);
	/* BUSY until req_give_back() or req_end_busy(): nothing below may sleep. */
	userblk_busy_delay();

	WRITE_ONCE(ub->daemon_cpu, raw_smp_processor_id());
	r.xid = req->xid;
	r.pos = req->pos;
	r.len = req->len;
	r.op = req->op;
	r.flags = 0;
	left = 0;
	if (req->op == USERBLK_OP_WRITE) {
		left = userblk_copy(req, ubuf, true);
		if (left && !user_side_faults(ubuf, req->len, left, true)) {
			/* The handed-over mapping faulted: it cannot heal, fail it in the end. */
			userblk_trace_fault(ub, req, "wfault", req->addr, left, "kernel");
			if (++req->faults >= USERBLK_MAX_FAULTS) {
				req_end_busy(ub, req, -EIO);
				return -EFAULT;
			}
			req_give_back(ub, req, REQ_QUEUED);	/* or ended: -EFAULT all the same */
			return -EFAULT;
		}
	}
	if (!left) {
		pagefault_disable();
		left = copy_to_user(uarg, &r, sizeof(r));
		pagefault_enable();
	}
	/*
	 * write1 only once the daemon has the request: a copy that is retried (the
	 * description could not be written) would log it twice, from other threads.
	 */
	if (!left && req->op == USERBLK_OP_WRITE && req->traced)
		userblk_trace(ub, req, "write1");
	if (left) {
		/*
		 * The daemon's memory is not (yet) there: give the request back, fault it in.
		 * An expired request is ended instead; the next try takes another one.
		 */
		if (req_give_back(ub, req, REQ_QUEUED) == -ESHUTDOWN)
			return -ESHUTDOWN;
		if (++tries >= USERBLK_COPY_TRIES ||
		    fault_in_writeable((char __user *)uarg, sizeof(r)) ||
		    (r.op == USERBLK_OP_WRITE && fault_in_writeable(ubuf, r.len))) {
			pr_warn_ratelimited("userblk%d: GET_REQUEST: the daemon's buffer faults (user side)\n",
					    ub->index);
			return -EFAULT;
		}
		goto again;
	}
	/*
	 * Described. An expired request is ended instead of sent: the daemon's COMPLETE of
	 * it gets -ENOENT, as for any request that timed out.
	 */
	if (req_give_back(ub, req, REQ_SENT) == -ESHUTDOWN)
		return -ESHUTDOWN;
	return 0;
}

/* userblk_complete - finish a request the daemon served. May sleep. */
static long userblk_complete(struct userblk_dev *ub, struct userblk_complete __user *uarg)
{
	struct userblk_complete c;
	struct userblk_req *req, *it;
	const void __user *ubuf;
	unsigned long left;
	bool look;
	int tries = 0;
	int err;

	if (copy_from_user(&c, uarg, sizeof(c)))
		return -EFAULT;
	if (c.status > 0 || c.status < -MAX_ERRNO)
		return -EINVAL;
	ubuf = u64_to_user_ptr(c.buf);
again:
	req = NULL;
	spin_lock(&ub->lock);
	if (ub->dead) {
		spin_unlock(&ub->lock);
		return -ESHUTDOWN;
	}
	list_for_each_entry(it, &ub->sent, node) {
		if (it->xid == c.xid) {
			req = it;
			break;
		}
	}
	if (!req) {
		/* Being copied? Only counted: a BUSY request is its owner's alone. */
		list_for_each_entry(it, &ub->busy, busy_node) {
			if (it->xid == c.xid) {
				userblk_count(USERBLK_EV_COMPLETE_BUSY);
				break;
			}
		}
		spin_unlock(&ub->lock);
		return -ENOENT;	/* unknown, not sent yet, being copied, already completed, or timed out */
	}
	if ((!c.status && req->op == USERBLK_OP_READ && c.len != req->len) ||
	    (!c.status && req->op == USERBLK_OP_WRITE && c.len)) {
		spin_unlock(&ub->lock);
		return -EINVAL;
	}
	req_own(ub, req);
	spin_unlock(&ub->lock);
	/* BUSY until req_give_back(), req_end_busy() or req_finish_busy(): no sleeping. */
	userblk_busy_delay();

	if (!c.status && req->op == USERBLK_OP_READ) {
		left = userblk_copy(req, (void __user *)ubuf, false);
		if (left && !user_side_faults((void __user *)ubuf, req->len, left, false)) {
			userblk_trace_fault(ub, req, "rfault", req->addr, left, "kernel");
			if (++req->faults >= USERBLK_MAX_FAULTS)
				req_end_busy(ub, req, -EIO);
			else	/* the daemon may complete again (unless it was ended instead) */
				req_give_back(ub, req, REQ_SENT);
			return -EFAULT;
		}
		if (left) {
			err = req_give_back(ub, req, REQ_SENT);
			if (err == -ESHUTDOWN)
				return -ESHUTDOWN;
			if (err)
				return -ENOENT;	/* expired: timed out while we copied */
			/* req is not ours any more: c.len is its length (checked above) */
			if (++tries >= USERBLK_COPY_TRIES || fault_in_readable(ubuf, c.len)) {
				pr_warn_ratelimited("userblk%d: COMPLETE %08llx: the daemon's buffer faults (user side)\n",
						    ub->index, c.xid);
				return -EFAULT;
			}
			goto again;
		}
		if (req->traced)
			userblk_trace(ub, req, "read1");
	}
	/* Expired meanwhile: the segment fails whatever we copied; the daemon hears so. */
	if (req_finish_busy(ub, req, c.status))
		return -ENOENT;
	/*
	 * The daemon's second look, after the submitter's (the report's readx). It reads
	 * through the submitter's mapping: only if the submitter still waits for it (an
	 * atomic one stops after spin_timeout_ms), and up to the release without being
	 * preempted, as BUSY is, because an atomic submitter busy-waits for the release.
	 */
	look = req->traced && req->op == USERBLK_OP_READ && !c.status &&
	       wait_for_completion_timeout(&req->seen, HZ);
	preempt_disable();
	if (look && atomic_cmpxchg(&req->xclaim, XCLAIM_OPEN, XCLAIM_DAEMON) == XCLAIM_OPEN)
		userblk_trace(ub, req, "readx");
	req_release(req);
	preempt_enable();
	return 0;
}

/* userblk_ioctl - the control device's ioctls. May sleep. */
static long userblk_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct userblk_ctl *ctl = file->private_data;
	struct userblk_dev *ub = smp_load_acquire(&ctl->ub);
	void __user *uarg = (void __user *)arg;

	if (cmd == USERBLK_IOC_CREATE)
		return userblk_create(ctl, uarg);
	if (!ub)
		return -ENXIO;
	switch (cmd) {
	case USERBLK_IOC_GET_REQUEST:
		return userblk_get_request(ub, uarg);
	case USERBLK_IOC_COMPLETE:
		return userblk_complete(ub, uarg);
	case USERBLK_IOC_SHUTDOWN:
		userblk_fail_all(ub);
		return 0;
	}
	return -ENOTTY;
}

/*
 * userblk_release - the daemon closed the control fd (or died): fail everything
 * pending and remove the disk. No ioctl of this fd runs any more, so no request is
 * BUSY. May sleep (del_gendisk waits for submitters to leave).
 */
static int userblk_release(struct inode *inode, struct file *file)
{
	struct userblk_ctl *ctl = file->private_data;
	struct userblk_dev *ub = ctl->ub;

	kfree(ctl);
	if (!ub)
		return 0;
	userblk_fail_all(ub);
	del_gendisk(ub->disk);
	/* del_gendisk() returned: no submitter is inside userblk_submit_bio any more. */
	ub->disk->private_data = NULL;
	put_disk(ub->disk);
	if (atomic_read(&ub->timeouts))
		pr_info("userblk%d: removed (%d segments timed out)\n", ub->index, atomic_read(&ub->timeouts));
	else
		pr_info("userblk%d: removed\n", ub->index);
	ida_free(&userblk_ida, ub->index);
	kfree(ub);
	module_put(THIS_MODULE);	/* the disk's; the fd's own is dropped after we return */
	return 0;
}

/*
 * userblk_flush - a close() of the control fd, perhaps while another thread of the
 * daemon is still inside an ioctl of it (the fd's release waits for that ioctl): count
 * it when a copy is in progress. Does not sleep.
 */
static int userblk_flush(struct file *file, fl_owner_t id)
{
	struct userblk_ctl *ctl = file->private_data;
	struct userblk_dev *ub = smp_load_acquire(&ctl->ub);

	/* Our caller holds a reference to the file: the release, which frees ub, is later. */
	if (!ub)
		return 0;
	spin_lock(&ub->lock);
	if (!list_empty(&ub->busy))
		userblk_count(USERBLK_EV_CLOSE_BUSY);
	spin_unlock(&ub->lock);
	return 0;
}

/* userblk_open - a new control fd, no disk yet; needs CAP_SYS_ADMIN. May sleep. */
static int userblk_open(struct inode *inode, struct file *file)
{
	struct userblk_ctl *ctl;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	ctl = kzalloc(sizeof(*ctl), GFP_KERNEL);
	if (!ctl)
		return -ENOMEM;
	mutex_init(&ctl->lock);
	file->private_data = ctl;	/* misc_open() left the miscdevice here */
	return 0;
}

static const struct file_operations userblk_ctl_fops = {
	.owner		= THIS_MODULE,
	.open		= userblk_open,
	.unlocked_ioctl	= userblk_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,	/* the uapi structs: one layout on 32 and 64 bits */
	.flush		= userblk_flush,
	.release	= userblk_release,
	.llseek		= noop_llseek,
};

/*
 * The event counters: USERBLK_EVENTS_DIR, one read-only file per USERBLK_EVENT_NAMES
 * entry, on the control device. Filled in by userblk_init() from the uapi names, so the
 * header stays the only list.
 */
struct userblk_event_attr {
	struct device_attribute attr;
	int event;
};

/* event_show - one counter. Does not sleep. */
static ssize_t event_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct userblk_event_attr *ea = container_of(attr, struct userblk_event_attr, attr);

	return sysfs_emit(buf, "%ld\n", atomic_long_read(&userblk_events[ea->event]));
}

static struct userblk_event_attr event_attrs[USERBLK_EV_COUNT];
static struct attribute *event_attr_list[USERBLK_EV_COUNT + 1];
static const struct attribute_group event_group = {
	.name	= "events",
	.attrs	= event_attr_list,
};
static const struct attribute_group *userblk_ctl_groups[] = { &event_group, NULL };

static struct miscdevice userblk_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= USERBLK_CTL_NAME,
	.fops	= &userblk_ctl_fops,
	.mode	= 0600,
	.groups	= userblk_ctl_groups,
};

/* userblk_init - check the parameters and register the control device. May sleep. */
static int __init userblk_init(void)
{
	int err, i;

	if (mode_is_unsafe(map_mode) && !unsafe_modes) {
		pr_err("userblk: map_mode=%s refused: it hands a CPU-local mapping to another thread; load with unsafe_modes=1 to allow it\n",
		       mode_name(map_mode));
		return -EPERM;
	}
	BUILD_BUG_ON(ARRAY_SIZE(event_names) != USERBLK_EV_COUNT);
	for (i = 0; i < USERBLK_EV_COUNT; i++) {
		sysfs_attr_init(&event_attrs[i].attr.attr);
		event_attrs[i].attr.attr.name = event_names[i];
		event_attrs[i].attr.attr.mode = 0444;
		event_attrs[i].attr.show = event_show;
		event_attrs[i].event = i;
		event_attr_list[i] = &event_attrs[i].attr.attr;
	}
	sema_init(&kmap_slots, USERBLK_KMAP_SLOTS);
	err = misc_register(&userblk_misc);
	if (err)
		return err;
	WRITE_ONCE(userblk_loaded, true);
	pr_info("userblk: loaded, map_mode=%s trace=%u io_timeout=%u unsafe_modes=%d\n",
		mode_name(map_mode), trace, io_timeout, unsafe_modes);
	return 0;
}

/* userblk_exit - no disk exists (each holds a module reference). May sleep. */
static void __exit userblk_exit(void)
{
	misc_deregister(&userblk_misc);
	ida_destroy(&userblk_ida);
}

module_init(userblk_init);
module_exit(userblk_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Block device served by a userspace daemon, with selectable page-mapping modes");
MODULE_AUTHOR("kmodlab");
