// SPDX-License-Identifier: GPL-2.0
/*
 * kmodlab_canary - can this machine show a CPU-local highmem mapping going stale on
 * another CPU, to a consumer like a block daemon?
 *
 * A mapper (pinned to one CPU) maps one of a few HIGHMEM pages with kmap_local_page()
 * and publishes the address; a writer (pinned to another CPU) goes through it, in turn
 * both ways a block daemon does: on even handovers it writes a pattern and the mapper
 * checks that its page holds it (the daemon filling a read request), on odd ones the
 * mapper has put the pattern in its page and the writer checks that it reads it (the
 * daemon taking a write request's data). When the writer's TLB still holds an earlier
 * page for that address, the access goes there and the pattern is missing: the bug
 * class kmodlab hunts for. kmap() pages are the control (a global mapping): never a
 * mismatch. Both directions count, because a kernel can hide one and not the other: a
 * Thumb-2 build of 6.12 showed the daemon stale data it read while the writes all
 * landed right.
 *
 * Two writers are measured, because they can disagree:
 *  - a kernel thread that stores through the address (insmod time);
 *  - a user task inside a syscall that copies from its own buffer with
 *    copy_from_user(), as a daemon's ioctl does (reading /proc/kmodlab_canary).
 * With CONFIG_CPU_TTBR0_PAN every user access writes TTBCR, and QEMU's TCG flushes the
 * whole TLB of an LPAE CPU on a TTBCR write, so under emulation only the kernel thread
 * may see the stale entry. Real CPUs do no TLB maintenance on that write.
 *
 * Both results are one line, printed on each read of the proc file:
 * "kmodlab-canary: local=N kmap=M of I highmem=H cpus=a,b user_local=U user_kmap=V
 *  ttbr0_pan=P".
 *
 * Locking and lifetime: canary_mutex serialises runs (insmod and proc reads); the
 * handover state (shared_addr, shared_val, shared_read, shared_stale, turn) belongs to
 * the run holding it. The side whose turn it is owns the state: each side writes it
 * before its release store to turn, and the other reads it after its acquire load. Each run
 * owns its helper thread and waits for it to end before returning. Every wait on the
 * other side is bounded by WAIT_JIFFIES, so a side that never runs ends the run with an
 * error instead of a hang. The pages live from init to exit.
 */
#include <linux/completion.h>
#include <linux/highmem.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/uaccess.h>

#define CANARY_PAGES	16
#define WAIT_JIFFIES	(10 * HZ)
#define TURN_MAPPER	0
#define TURN_WRITER	1
#define TURN_STOP	2

static unsigned int iterations = 2000;
module_param(iterations, uint, 0444);
MODULE_PARM_DESC(iterations, "Handovers per mapping kind and writer");

static DEFINE_MUTEX(canary_mutex);
static struct page *pages[CANARY_PAGES];
static unsigned int highmem_pages;
static int cpu_a, cpu_b;
static unsigned int kthread_local, kthread_kmap;	/* from insmod time */

/* The handover of one run, under canary_mutex. */
static void *shared_addr;
static unsigned long shared_val;
static bool shared_read;	/* this handover, the writer reads shared_val back */
static bool shared_stale;	/* ... and it read something else */
static int turn;
static bool timed_out;

/*
 * wait_turn - spin until turn leaves @from; false (and timed_out set) after
 * WAIT_JIFFIES. Does not sleep.
 */
static bool wait_turn(int from, int *now)
{
	unsigned long end = jiffies + WAIT_JIFFIES;
	int t;

	while ((t = smp_load_acquire(&turn)) == from) {
		if (time_after(jiffies, end) || READ_ONCE(timed_out)) {
			WRITE_ONCE(timed_out, true);
			return false;
		}
		cpu_relax();
	}
	*now = t;
	return true;
}

/*
 * write_kernel - the kernel-thread writer: a plain store through the address, or on a
 * read handover a plain load. Does not sleep.
 */
static int write_kernel(void __user *ubuf)
{
	if (shared_read)
		shared_stale = READ_ONCE(*(unsigned long *)shared_addr) != shared_val;
	else
		WRITE_ONCE(*(unsigned long *)shared_addr, shared_val);
	return 0;
}

/*
 * write_user - the consumer writer: the value goes to the user buffer and comes back
 * through copy_from_user() into the mapping, or on a read handover the mapping goes to
 * the user buffer through copy_to_user(): the uaccess paths a daemon's ioctls take. May
 * fault in the user page (may sleep); the mapper is the one holding the mapping.
 */
static int write_user(void __user *ubuf)
{
	unsigned long v = shared_val;

	if (shared_read) {
		if (copy_to_user(ubuf, shared_addr, sizeof(v)) ||
		    get_user(v, (unsigned long __user *)ubuf))
			return -EFAULT;
		shared_stale = v != shared_val;
		return 0;
	}
	if (copy_to_user(ubuf, &v, sizeof(v)))
		return -EFAULT;
	if (copy_from_user(shared_addr, ubuf, sizeof(v)))
		return -EFAULT;
	return 0;
}

/* writer_loop - serve handovers until the mapper says stop. */
static int writer_loop(int (*write)(void __user *), void __user *ubuf)
{
	int t, err;

	for (;;) {
		if (!wait_turn(TURN_MAPPER, &t))
			return -ETIMEDOUT;
		if (t == TURN_STOP)
			return 0;
		err = write(ubuf);
		if (err) {
			WRITE_ONCE(timed_out, true);
			return err;
		}
		smp_store_release(&turn, TURN_MAPPER);
	}
}

/*
 * map_run - one kind of mapping, @iterations handovers; returns the mismatches or a
 * negative errno when the writer stopped answering. Does not sleep while a page is
 * mapped with kmap_local_page().
 */
static int map_run(bool global)
{
	unsigned int i, bad = 0;
	int t;

	for (i = 0; i < iterations; i++) {
		struct page *pg = pages[i % CANARY_PAGES];
		void *p = global ? kmap(pg) : kmap_local_page(pg);
		bool reads = i & 1;
		bool ok;

		/*
		 * A read handover puts the pattern in the page for the writer to find; no
		 * page ever held i + 1 before, so a stale mapping cannot read it.
		 */
		WRITE_ONCE(*(unsigned long *)p, reads ? i + 1 : 0);
		shared_addr = p;
		shared_val = i + 1;
		shared_read = reads;
		shared_stale = false;
		smp_store_release(&turn, TURN_WRITER);
		ok = wait_turn(TURN_WRITER, &t);
		if (ok && (reads ? READ_ONCE(shared_stale) : READ_ONCE(*(unsigned long *)p) != i + 1))
			bad++;
		if (global)
			kunmap(pg);
		else
			kunmap_local(p);
		if (!ok)
			return -ETIMEDOUT;
	}
	return bad;
}

/* Both kinds; the counts in @local and @kmap. */
static int map_both(unsigned int *local, unsigned int *kmap_bad)
{
	int r = map_run(false);

	if (r < 0)
		return r;
	*local = r;
	r = map_run(true);
	if (r < 0)
		return r;
	*kmap_bad = r;
	return 0;
}

struct helper {
	struct completion done;
	unsigned int local, kmap;
	int err;
};

/* kthread_writer - the kernel-thread writer on cpu_b. */
static int kthread_writer(void *data)
{
	struct helper *h = data;

	h->err = writer_loop(write_kernel, NULL);
	complete(&h->done);
	return 0;
}

/* kthread_mapper - the mapper on cpu_a, for the consumer run. */
static int kthread_mapper(void *data)
{
	struct helper *h = data;

	h->err = map_both(&h->local, &h->kmap);
	smp_store_release(&turn, TURN_STOP);
	complete(&h->done);
	return 0;
}

/*
 * start_helper - a thread bound to @cpu running @fn. Caller holds canary_mutex and
 * waits for h->done before the helper's stack data goes away. May sleep.
 */
static int start_helper(int (*fn)(void *), struct helper *h, int cpu)
{
	struct task_struct *t;

	init_completion(&h->done);
	h->err = 0;
	turn = TURN_MAPPER;
	timed_out = false;
	t = kthread_create(fn, h, "kmodlab-canary");
	if (IS_ERR(t))
		return PTR_ERR(t);
	kthread_bind(t, cpu);
	wake_up_process(t);
	return 0;
}

/*
 * run_kthread - mapper in the calling task on cpu_a, writer a kernel thread on cpu_b.
 * May sleep (outside the handovers).
 */
static int run_kthread(void)
{
	struct helper h;
	int err;

	err = start_helper(kthread_writer, &h, cpu_b);
	if (err)
		return err;
	set_cpus_allowed_ptr(current, cpumask_of(cpu_a));
	err = map_both(&kthread_local, &kthread_kmap);
	smp_store_release(&turn, TURN_STOP);
	wait_for_completion(&h.done);
	set_cpus_allowed_ptr(current, cpu_possible_mask);
	return err ? err : h.err;
}

/*
 * run_user - writer in the calling user task on cpu_b (inside read()), mapper a kernel
 * thread on cpu_a. May sleep (outside the handovers).
 */
static int run_user(void __user *ubuf, unsigned int *local, unsigned int *kmap_bad)
{
	struct helper h;
	cpumask_var_t old;
	int err;

	if (!alloc_cpumask_var(&old, GFP_KERNEL))
		return -ENOMEM;
	cpumask_copy(old, current->cpus_ptr);
	set_cpus_allowed_ptr(current, cpumask_of(cpu_b));
	err = start_helper(kthread_mapper, &h, cpu_a);
	if (!err) {
		err = writer_loop(write_user, ubuf);
		wait_for_completion(&h.done);
		if (!err)
			err = h.err;
		*local = h.local;
		*kmap_bad = h.kmap;
	}
	set_cpus_allowed_ptr(current, old);
	free_cpumask_var(old);
	return err;
}

/* canary_read - run the consumer writer and return the whole line. May sleep. */
static ssize_t canary_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	unsigned int user_local = 0, user_kmap = 0;
	char line[192];
	int err, n;

	if (*ppos)
		return 0;
	if (count < sizeof(line))
		return -EINVAL;
	if (mutex_lock_interruptible(&canary_mutex))
		return -EINTR;
	err = iterations ? run_user(ubuf, &user_local, &user_kmap) : 0;
	mutex_unlock(&canary_mutex);
	if (err) {
		pr_info("kmodlab-canary: consumer run failed: %d\n", err);
		return err;
	}
	n = scnprintf(line, sizeof(line),
		      "kmodlab-canary: local=%u kmap=%u of %u highmem=%u cpus=%d,%d user_local=%u user_kmap=%u ttbr0_pan=%d\n",
		      kthread_local, kthread_kmap, iterations, highmem_pages, cpu_a, cpu_b,
		      user_local, user_kmap, IS_ENABLED(CONFIG_CPU_TTBR0_PAN));
	pr_info("%s", line);
	if (copy_to_user(ubuf, line, n))
		return -EFAULT;
	*ppos = n;
	return n;
}

static const struct proc_ops canary_proc_ops = {
	.proc_read	= canary_read,
	.proc_lseek	= noop_llseek,
};

static void free_pages_all(void)
{
	unsigned int i;

	for (i = 0; i < CANARY_PAGES; i++)
		if (pages[i])
			__free_page(pages[i]);
}

/* canary_init - allocate the pages, run the kernel-thread writer. May sleep. */
static int __init canary_init(void)
{
	unsigned int i;
	int err;

	for (i = 0; i < CANARY_PAGES; i++) {
		pages[i] = alloc_page(GFP_HIGHUSER);
		if (!pages[i]) {
			err = -ENOMEM;
			goto out_free_pages;
		}
		highmem_pages += PageHighMem(pages[i]);
	}
	cpu_a = cpumask_first(cpu_online_mask);
	cpu_b = cpumask_last(cpu_online_mask);
	if (cpu_a == cpu_b || !highmem_pages || !iterations) {
		/* Nothing to measure: say so once and stay loaded, so a read gives the line. */
		pr_info("kmodlab-canary: local=0 kmap=0 of 0 highmem=%u cpus=%d,%d user_local=0 user_kmap=0 ttbr0_pan=%d\n",
			highmem_pages, cpu_a, cpu_b, IS_ENABLED(CONFIG_CPU_TTBR0_PAN));
		iterations = 0;
	} else {
		mutex_lock(&canary_mutex);
		err = run_kthread();
		mutex_unlock(&canary_mutex);
		if (err) {
			pr_info("kmodlab-canary: kernel-thread run failed: %d\n", err);
			goto out_free_pages;
		}
	}
	if (!proc_create("kmodlab_canary", 0400, NULL, &canary_proc_ops)) {
		err = -ENOMEM;
		goto out_free_pages;
	}
	return 0;

out_free_pages:
	free_pages_all();
	return err;
}

/* canary_exit - the proc entry goes first (waiting out readers), then the pages. */
static void __exit canary_exit(void)
{
	remove_proc_entry("kmodlab_canary", NULL);
	free_pages_all();
}

module_init(canary_init);
module_exit(canary_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodlab: can this machine show stale CPU-local highmem mappings to a consumer?");
