// SPDX-License-Identifier: GPL-2.0
/*
 * userblk - a block device whose data a userspace daemon supplies.
 *
 * A bio's segments are handed one at a time to a daemon that loops on ioctls on
 * /dev/userblk-ctl: GET_REQUEST blocks until a segment is pending, COMPLETE hands back
 * the status and a read's data. The submitting thread waits until its segment is done.
 *
 * The module exists to show one bug class on real kernels: a kmap_atomic() or
 * kmap_local_page() address is valid only on the CPU (and in the task) that made it.
 * Handing such an address to another thread, as the original report's driver did,
 * makes that thread read and write through whatever its own TLB still holds for the
 * address: on HIGHMEM machines two threads see different bytes "at the same address".
 * map_mode chooses between that bug (atomic, local) and its fixes (kmap, copier).
 *
 * Every event of a traced transaction is printed as one line with the columns of the
 * original report (op, transaction id, start position, length, crc32, address, thread)
 * plus the cpu, for kmodlab's trace oracle.
 */

#include <linux/blkdev.h>
#include <linux/crc32.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/idr.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/refcount.h>
#include <linux/sched.h>
#include <linux/sched/clock.h>
#include <linux/semaphore.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "compat.h"
#include "uapi/userblk.h"

static const char * const mode_names[] = {
	[USERBLK_MAP_DEFAULT]	= "default",
	[USERBLK_MAP_ATOMIC]	= "atomic",
	[USERBLK_MAP_LOCAL]	= "local",
	[USERBLK_MAP_KMAP]	= "kmap",
	[USERBLK_MAP_COPIER]	= "copier",
};

static int map_mode = USERBLK_MAP_COPIER;

static int map_mode_set(const char *val, const struct kernel_param *kp)
{
	int i;

	for (i = USERBLK_MAP_ATOMIC; i < ARRAY_SIZE(mode_names); i++) {
		if (sysfs_streq(val, mode_names[i])) {
			map_mode = i;
			return 0;
		}
	}
	return -EINVAL;
}

static int map_mode_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", mode_names[map_mode]);
}

static const struct kernel_param_ops map_mode_ops = {
	.set = map_mode_set,
	.get = map_mode_get,
};
module_param_cb(map_mode, &map_mode_ops, NULL, 0644);
MODULE_PARM_DESC(map_mode,
		 "How a segment's page reaches the daemon: atomic|local (the bug: submitter's CPU-local mapping handed over), kmap|copier (fixes). Default copier; a disk may choose its own at creation.");

static unsigned int trace;
module_param(trace, uint, 0644);
MODULE_PARM_DESC(trace, "Trace lines: 0 off, 1 every transaction, N every Nth transaction");

static unsigned int spin_timeout_ms = 3000;
module_param(spin_timeout_ms, uint, 0644);
MODULE_PARM_DESC(spin_timeout_ms, "atomic mode: how long a submitter busy-waits for the daemon before failing the segment");

static unsigned int max_spinners = 1;
module_param(max_spinners, uint, 0444);
MODULE_PARM_DESC(max_spinners, "atomic mode: submitters busy-waiting at once (more starve the daemon of CPU)");

static unsigned int pause_ms = 2;
module_param(pause_ms, uint, 0644);
MODULE_PARM_DESC(pause_ms, "Pause before the submitter's last look (read3) at a traced read");

enum req_state {
	REQ_QUEUED,	/* waiting for GET_REQUEST */
	REQ_SENT,	/* described to the daemon, not yet completed */
	REQ_COPYING,	/* COMPLETE owns it */
	REQ_DONE,	/* status is final */
};

struct userblk_req {
	struct list_head node;
	refcount_t ref;
	u64 xid;
	u64 pos;
	u32 len;
	u32 op;
	struct page *page;
	unsigned int offset;
	void *addr;		/* submitter's mapping; NULL in copier mode */
	int mode;
	enum req_state state;	/* under dev->lock */
	int status;
	bool traced;
	int faults;		/* failed copies through the handed-over address */
	struct completion done;	/* sleeping submitters */
	int done_flag;		/* busy-waiting submitters (atomic mode) */
	struct completion seen;	/* submitter logged read2: daemon may log readx */
	struct completion xdone; /* daemon logged readx: submitter may unmap */
	int xdone_flag;
};

struct userblk_dev {
	struct gendisk *disk;
	int index;
	int mode;
	spinlock_t lock;		/* protects the lists, dead and req->state */
	struct list_head queued;
	struct list_head sent;
	wait_queue_head_t wq;		/* GET_REQUEST waits here */
	bool dead;
	atomic64_t next_xid;
	struct semaphore spinners;	/* atomic mode: leave one CPU for the daemon */
	int daemon_cpu;			/* where GET_REQUEST last ran; -1 unknown */
};

static DEFINE_IDA(userblk_ida);

static const char *mode_name(int mode)
{
	return mode > 0 && mode < ARRAY_SIZE(mode_names) ? mode_names[mode] : "?";
}

static u32 userblk_crc(const void *p, u32 len)
{
	return crc32_le(~0, p, len) ^ ~0;
}

/*
 * userblk_trace - print one trace line with the original report's columns.
 * Does not sleep; callable with a kmap_atomic mapping held.
 */
static void userblk_trace(struct userblk_dev *ub, struct userblk_req *req,
			  const char *op, const void *addr)
{
	pr_info("userblk%d: %-6s %08llx %016llx %016llx %016x %px %d cpu=%d mode=%s\n",
		ub->index, op, req->xid, req->pos, (u64)req->len,
		userblk_crc(addr, req->len), addr, task_pid_nr(current),
		raw_smp_processor_id(), mode_name(req->mode));
}

/*
 * userblk_trace_page - trace through a short-lived mapping of our own (copier mode,
 * where no mapping is handed over). May sleep only as kmap_local_page() allows.
 */
static void userblk_trace_page(struct userblk_dev *ub, struct userblk_req *req,
			       const char *op)
{
	void *p = kmap_local_page(req->page);

	userblk_trace(ub, req, op, p + req->offset);
	kunmap_local(p);
}

/*
 * userblk_trace_fault - a copy through a segment's mapping faulted part-way: the
 * "short copy" evidence. The crc column holds the bytes left uncopied. Does not sleep.
 */
static void userblk_trace_fault(struct userblk_dev *ub, struct userblk_req *req,
				const char *op, const void *addr, unsigned long left)
{
	req->faults++;
	if (req->traced)
		pr_info("userblk%d: %-6s %08llx %016llx %016llx %016lx %px %d cpu=%d mode=%s\n",
			ub->index, op, req->xid, req->pos, (u64)req->len, left, addr,
			task_pid_nr(current), raw_smp_processor_id(), mode_name(req->mode));
	else
		pr_warn_ratelimited("userblk%d: %s: %lu of %u bytes not copied through %px (mode %s)\n",
				    ub->index, op, left, req->len, addr, mode_name(req->mode));
}

static void req_put(struct userblk_req *req)
{
	if (refcount_dec_and_test(&req->ref))
		kfree(req);
}

/*
 * req_finish - make a request's status final and wake its submitter.
 * Called with dev->lock held or with the request owned (REQ_COPYING). Does not sleep.
 */
static void req_finish(struct userblk_req *req, int status)
{
	req->status = status;
	req->state = REQ_DONE;
	smp_store_release(&req->done_flag, 1);
	complete(&req->done);
}

/*
 * req_wait_done - the submitter's wait for its segment. Sleeps, except in atomic mode,
 * where a kmap_atomic mapping is held and the submitter busy-waits (the original
 * driver slept here; on 6.x that would tear the mapping down under the daemon), for at
 * most spin_timeout_ms.
 */
static int req_wait_done(struct userblk_dev *ub, struct userblk_req *req)
{
	u64 deadline;

	if (req->mode != USERBLK_MAP_ATOMIC) {
		wait_for_completion(&req->done);
		return req->status;
	}
	/*
	 * local_clock(), not jiffies: while we spin, another CPU may sit in stop_machine()
	 * with interrupts off waiting for us, and jiffies would never reach the deadline.
	 */
	deadline = local_clock() + (u64)spin_timeout_ms * NSEC_PER_MSEC;
	while (!smp_load_acquire(&req->done_flag)) {
		if (local_clock() > deadline) {
			spin_lock(&ub->lock);
			if (req->state == REQ_QUEUED || req->state == REQ_SENT) {
				list_del_init(&req->node);
				req->state = REQ_DONE;
				req->status = -ETIMEDOUT;
				spin_unlock(&ub->lock);
				req_put(req);	/* the list's reference */
				return -ETIMEDOUT;
			}
			spin_unlock(&ub->lock);
			/* COMPLETE owns it and is copying: it will finish soon. */
		}
		cpu_relax();
	}
	return req->status;
}

/*
 * userblk_segment - hand one segment to the daemon and wait for it.
 * May sleep (all modes but atomic, which busy-waits while holding kmap_atomic).
 */
static int userblk_segment(struct userblk_dev *ub, int op, u64 pos, struct bio_vec *bv)
{
	struct userblk_req *req;
	bool write = op == USERBLK_OP_WRITE;
	void *base = NULL;
	int ret;

	req = kzalloc(sizeof(*req), GFP_NOIO);
	if (!req)
		return -ENOMEM;
	refcount_set(&req->ref, 2);	/* submitter + the lists / the daemon */
	INIT_LIST_HEAD(&req->node);
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
	req->traced = trace && ((u32)req->xid % trace) == 0;

	/*
	 * Busy-waiting on the CPU the daemon is pinned to would wait for ever: such a
	 * submitter (a kworker doing writeback, say) takes the global mapping instead.
	 */
	if (req->mode == USERBLK_MAP_ATOMIC &&
	    (READ_ONCE(ub->daemon_cpu) < 0 || raw_smp_processor_id() == READ_ONCE(ub->daemon_cpu)))
		req->mode = USERBLK_MAP_KMAP;	/* also while we do not know where it runs */
	switch (req->mode) {
	case USERBLK_MAP_ATOMIC:
		down(&ub->spinners);
		base = kmap_atomic(req->page);	/* CPU-local; preemption off */
		if (smp_processor_id() == READ_ONCE(ub->daemon_cpu)) {
			/* migrated onto the daemon's CPU meanwhile */
			kunmap_atomic(base);
			up(&ub->spinners);
			req->mode = USERBLK_MAP_KMAP;
			base = kmap(req->page);
		}
		break;
	case USERBLK_MAP_LOCAL:
		base = kmap_local_page(req->page);	/* CPU- and task-local */
		break;
	case USERBLK_MAP_KMAP:
		base = kmap(req->page);		/* global: valid on every CPU */
		break;
	}
	if (base)
		req->addr = base + req->offset;

	if (req->traced) {
		if (req->addr)
			userblk_trace(ub, req, write ? "write" : "read0", req->addr);
		else
			userblk_trace_page(ub, req, write ? "write" : "read0");
	}

	spin_lock(&ub->lock);
	if (ub->dead) {
		spin_unlock(&ub->lock);
		refcount_dec(&req->ref);
		ret = -EIO;
		goto out_unmap;
	}
	req->state = REQ_QUEUED;
	list_add_tail(&req->node, &ub->queued);
	spin_unlock(&ub->lock);
	wake_up(&ub->wq);

	ret = req_wait_done(ub, req);

	if (req->traced && !write && ret == 0) {
		if (req->addr)
			userblk_trace(ub, req, "read2", req->addr);
		else
			userblk_trace_page(ub, req, "read2");
		complete(&req->seen);
		/*
		 * Wait for the daemon's second look, which reads through our mapping: we must
		 * not unmap before it is done. It always signals xdone (its own wait for
		 * "seen" is bounded, and a dying daemon's requests are failed with xdone set).
		 */
		if (req->mode == USERBLK_MAP_ATOMIC) {
			while (!smp_load_acquire(&req->xdone_flag))
				cpu_relax();
			mdelay(pause_ms);
		} else {
			wait_for_completion(&req->xdone);
			msleep(pause_ms);
		}
		if (req->addr)
			userblk_trace(ub, req, "read3", req->addr);
		else
			userblk_trace_page(ub, req, "read3");
	}

out_unmap:
	switch (req->mode) {
	case USERBLK_MAP_ATOMIC:
		kunmap_atomic(base);
		up(&ub->spinners);
		break;
	case USERBLK_MAP_LOCAL:
		kunmap_local(base);
		break;
	case USERBLK_MAP_KMAP:
		kunmap(req->page);
		break;
	}
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
 * userblk_fail_all - fail every pending request and wake everyone: the daemon is
 * gone or shutting down. Does not sleep.
 */
static void userblk_fail_all(struct userblk_dev *ub)
{
	struct userblk_req *req, *tmp;
	LIST_HEAD(victims);

	spin_lock(&ub->lock);
	ub->dead = true;
	list_splice_init(&ub->queued, &victims);
	list_splice_init(&ub->sent, &victims);
	list_for_each_entry_safe(req, tmp, &victims, node) {
		list_del_init(&req->node);
		req_finish(req, -EIO);
		complete(&req->xdone);
		smp_store_release(&req->xdone_flag, 1);
		req_put(req);
	}
	spin_unlock(&ub->lock);
	wake_up_all(&ub->wq);
}

/* userblk_create - make /dev/userblkN for this control fd. May sleep. */
static long userblk_create(struct file *file, struct userblk_create __user *uarg)
{
	struct userblk_create c;
	struct userblk_dev *ub;
	int err;

	if (copy_from_user(&c, uarg, sizeof(c)))
		return -EFAULT;
	if (!c.size || c.size % 4096 || c.map_mode >= ARRAY_SIZE(mode_names))
		return -EINVAL;
	if (file->private_data)
		return -EBUSY;
	ub = kzalloc(sizeof(*ub), GFP_KERNEL);
	if (!ub)
		return -ENOMEM;
	spin_lock_init(&ub->lock);
	INIT_LIST_HEAD(&ub->queued);
	INIT_LIST_HEAD(&ub->sent);
	init_waitqueue_head(&ub->wq);
	atomic64_set(&ub->next_xid, 0);
	ub->mode = c.map_mode ? c.map_mode : map_mode;
	sema_init(&ub->spinners, clamp_t(int, max_spinners, 1, max(1, (int)num_online_cpus() - 1)));
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

	c.index = ub->index;
	file->private_data = ub;
	if (copy_to_user(uarg, &c, sizeof(c)))
		return -EFAULT;	/* the disk exists; the fd still serves it */
	pr_info("userblk%d: created, %llu bytes, map_mode=%s\n", ub->index, c.size, mode_name(ub->mode));
	return 0;

out_put_disk:
	put_disk(ub->disk);
out_free_index:
	ida_free(&userblk_ida, ub->index);
out_free_dev:
	kfree(ub);
	return err;
}

/*
 * userblk_copy_out - give a write's data to the daemon: through the submitter's mapping
 * (atomic, local, kmap) or through our own (copier). Runs in the daemon's thread.
 * May sleep (copy_to_user).
 */
static int userblk_copy_out(struct userblk_dev *ub, struct userblk_req *req, void __user *ubuf)
{
	unsigned long left;
	void *p;

	if (req->addr) {
		left = copy_to_user(ubuf, req->addr, req->len);
		if (left)
			userblk_trace_fault(ub, req, "wfault", req->addr, left);
		else if (req->traced)
			userblk_trace(ub, req, "write1", req->addr);
		return left ? -EFAULT : 0;
	}
	p = kmap_local_page(req->page);
	left = copy_to_user(ubuf, p + req->offset, req->len);
	if (req->traced && !left)
		userblk_trace(ub, req, "write1", p + req->offset);
	kunmap_local(p);
	return left ? -EFAULT : 0;
}

/* userblk_get_request - block until a segment is pending and describe it. May sleep. */
static long userblk_get_request(struct userblk_dev *ub, struct userblk_request __user *uarg)
{
	struct userblk_request r;
	struct userblk_req *req;
	int err;

	if (copy_from_user(&r, uarg, sizeof(r)))
		return -EFAULT;
	for (;;) {
		if (r.flags & USERBLK_GET_NOWAIT) {
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
		if (r.flags & USERBLK_GET_NOWAIT)
			return -EAGAIN;
	}
	if (req->op == USERBLK_OP_WRITE && r.buf_len < req->len) {
		spin_unlock(&ub->lock);
		return -EINVAL;	/* left queued: a bigger buffer can take it */
	}
	list_move_tail(&req->node, &ub->sent);
	/* While a write's data is copied out, a timing-out submitter must not unmap it. */
	req->state = req->op == USERBLK_OP_WRITE ? REQ_COPYING : REQ_SENT;
	/*
	 * The submitter keeps the request, its page and its mapping alive while the request
	 * is on a list: it only returns once the request is done or taken off.
	 */
	refcount_inc(&req->ref);
	spin_unlock(&ub->lock);

	WRITE_ONCE(ub->daemon_cpu, raw_smp_processor_id());
	r.xid = req->xid;
	r.pos = req->pos;
	r.len = req->len;
	r.op = req->op;
	r.flags = 0;
	err = 0;
	if (req->op == USERBLK_OP_WRITE)
		err = userblk_copy_out(ub, req, u64_to_user_ptr(r.buf));
	if (req->op == USERBLK_OP_WRITE) {
		spin_lock(&ub->lock);
		if (req->state == REQ_COPYING)
			req->state = REQ_SENT;
		spin_unlock(&ub->lock);
	}
	if (!err && copy_to_user(uarg, &r, sizeof(r)))
		err = -EFAULT;
	if (err) {
		/*
		 * Put it back first in line: a request is never lost to a bad pointer. A
		 * request whose own mapping keeps faulting is failed instead (it cannot heal).
		 */
		spin_lock(&ub->lock);
		if (req->state == REQ_SENT) {
			if (req->faults >= 3) {
				list_del_init(&req->node);
				req_finish(req, -EIO);
				smp_store_release(&req->xdone_flag, 1);
				complete(&req->xdone);
				spin_unlock(&ub->lock);
				req_put(req);	/* the list's reference */
				req_put(req);
				return err;
			}
			list_move(&req->node, &ub->queued);
			req->state = REQ_QUEUED;
		}
		spin_unlock(&ub->lock);
	}
	req_put(req);
	return err;
}

/*
 * userblk_copy_in - put a read's data into the segment, from the daemon's thread:
 * through the submitter's mapping (the bug when that mapping is CPU-local) or our own.
 * May sleep (copy_from_user).
 */
static int userblk_copy_in(struct userblk_dev *ub, struct userblk_req *req, const void __user *ubuf)
{
	unsigned long left;
	void *p;

	if (req->addr) {
		left = copy_from_user(req->addr, ubuf, req->len);
		if (left)
			userblk_trace_fault(ub, req, "rfault", req->addr, left);
		else if (req->traced)
			userblk_trace(ub, req, "read1", req->addr);
		return left ? -EFAULT : 0;
	}
	p = kmap_local_page(req->page);
	left = copy_from_user(p + req->offset, ubuf, req->len);
	if (req->traced && !left)
		userblk_trace(ub, req, "read1", p + req->offset);
	kunmap_local(p);
	return left ? -EFAULT : 0;
}

/* userblk_complete - finish a request the daemon served. May sleep. */
static long userblk_complete(struct userblk_dev *ub, struct userblk_complete __user *uarg)
{
	struct userblk_complete c;
	struct userblk_req *req = NULL, *it;
	int err = 0;

	if (copy_from_user(&c, uarg, sizeof(c)))
		return -EFAULT;
	if (c.status > 0 || c.status < -MAX_ERRNO)
		return -EINVAL;
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
		spin_unlock(&ub->lock);
		return -ENOENT;	/* unknown, already completed, or timed out */
	}
	if (!c.status && req->op == USERBLK_OP_READ && c.len != req->len) {
		spin_unlock(&ub->lock);
		return -EINVAL;
	}
	if (!c.status && req->op == USERBLK_OP_WRITE && c.len) {
		spin_unlock(&ub->lock);
		return -EINVAL;
	}
	list_del_init(&req->node);
	req->state = REQ_COPYING;
	spin_unlock(&ub->lock);

	if (!c.status && req->op == USERBLK_OP_READ)
		err = userblk_copy_in(ub, req, u64_to_user_ptr(c.buf));
	if (err) {
		spin_lock(&ub->lock);
		if (ub->dead) {
			req_finish(req, -EIO);
			complete(&req->xdone);
			smp_store_release(&req->xdone_flag, 1);
			spin_unlock(&ub->lock);
			req_put(req);
			return err;
		}
		list_add(&req->node, &ub->sent);
		req->state = REQ_SENT;
		spin_unlock(&ub->lock);
		return err;	/* still the daemon's: it may complete again */
	}
	req_finish(req, c.status);
	if (req->traced && req->op == USERBLK_OP_READ && !c.status) {
		/* The daemon's second look, after the submitter's (the report's readx). */
		if (wait_for_completion_timeout(&req->seen, HZ)) {
			if (req->addr)
				userblk_trace(ub, req, "readx", req->addr);
			else
				userblk_trace_page(ub, req, "readx");
		}
	}
	smp_store_release(&req->xdone_flag, 1);
	complete(&req->xdone);
	req_put(req);
	return 0;
}

static long userblk_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct userblk_dev *ub = file->private_data;
	void __user *uarg = (void __user *)arg;

	if (cmd == USERBLK_IOC_CREATE)
		return userblk_create(file, uarg);
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
 * pending and remove the disk. May sleep (del_gendisk waits for submitters to leave).
 */
static int userblk_release(struct inode *inode, struct file *file)
{
	struct userblk_dev *ub = file->private_data;

	if (!ub)
		return 0;
	userblk_fail_all(ub);
	del_gendisk(ub->disk);
	/* del_gendisk() returned: no submitter is inside userblk_submit_bio any more. */
	ub->disk->private_data = NULL;
	put_disk(ub->disk);
	pr_info("userblk%d: removed\n", ub->index);
	ida_free(&userblk_ida, ub->index);
	kfree(ub);
	return 0;
}

/* userblk_open - a new control fd, no disk yet. Does not sleep. */
static int userblk_open(struct inode *inode, struct file *file)
{
	file->private_data = NULL;	/* misc_open() left the miscdevice here */
	return 0;
}

static const struct file_operations userblk_ctl_fops = {
	.owner		= THIS_MODULE,
	.open		= userblk_open,
	.unlocked_ioctl	= userblk_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.release	= userblk_release,
	.llseek		= noop_llseek,
};

static struct miscdevice userblk_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= USERBLK_CTL_NAME,
	.fops	= &userblk_ctl_fops,
	.mode	= 0600,
};

static int __init userblk_init(void)
{
	int err = misc_register(&userblk_misc);

	if (!err)
		pr_info("userblk: loaded, map_mode=%s trace=%u\n", mode_name(map_mode), trace);
	return err;
}

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
