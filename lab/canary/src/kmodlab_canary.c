// SPDX-License-Identifier: GPL-2.0
/*
 * kmodlab_canary - can this machine show a CPU-local highmem mapping going stale on
 * another CPU at all?
 *
 * Thread A (pinned to one CPU) maps one of a few HIGHMEM pages with kmap_local_page()
 * and publishes the address; thread B (pinned to another CPU) writes a pattern through
 * it; A checks that its page holds the pattern. When B's TLB still holds an earlier
 * page for that address, B's write lands there and A sees a mismatch: the bug class
 * kmodlab hunts for. kmap() pages are the control (global mapping): never a mismatch.
 *
 * The result is one line: "kmodlab-canary: local=N kmap=M of I highmem=H cpus=a,b".
 */
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/highmem.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/sched.h>

#define CANARY_PAGES	16

static unsigned int iterations = 2000;
module_param(iterations, uint, 0444);
MODULE_PARM_DESC(iterations, "Handovers per mapping kind");

static struct page *pages[CANARY_PAGES];
static void *shared_addr;
static unsigned long shared_val;
static int turn;		/* 0: A's, 1: B's, 2: stop */
static struct completion b_done;

/* canary_b - write the value through the published address. Busy-waits, no sleep. */
static int canary_b(void *unused)
{
	for (;;) {
		int t;

		while ((t = smp_load_acquire(&turn)) == 0)
			cpu_relax();
		if (t == 2)
			break;
		WRITE_ONCE(*(unsigned long *)shared_addr, shared_val);
		smp_store_release(&turn, 0);
	}
	complete(&b_done);
	return 0;
}

/* canary_run - one kind of mapping, I handovers; returns the mismatches. */
static unsigned int canary_run(bool global)
{
	unsigned int i, bad = 0;

	for (i = 0; i < iterations; i++) {
		struct page *pg = pages[i % CANARY_PAGES];
		void *p = global ? kmap(pg) : kmap_local_page(pg);

		WRITE_ONCE(*(unsigned long *)p, 0);
		shared_addr = p;
		shared_val = i + 1;
		smp_store_release(&turn, 1);
		while (smp_load_acquire(&turn) == 1)
			cpu_relax();
		if (READ_ONCE(*(unsigned long *)p) != i + 1)
			bad++;
		if (global)
			kunmap(pg);
		else
			kunmap_local(p);
	}
	return bad;
}

static int __init canary_init(void)
{
	struct task_struct *b;
	unsigned int i, high = 0, local, global;
	int cpu_a = 0, cpu_b = cpumask_last(cpu_online_mask);

	for (i = 0; i < CANARY_PAGES; i++) {
		pages[i] = alloc_page(GFP_HIGHUSER);
		if (!pages[i])
			goto out_free;
		high += PageHighMem(pages[i]);
	}
	if (cpu_a == cpu_b || !high) {
		pr_info("kmodlab-canary: local=0 kmap=0 of 0 highmem=%u cpus=%d,%d\n", high, cpu_a, cpu_b);
		goto out_free;
	}
	init_completion(&b_done);
	turn = 0;
	b = kthread_create(canary_b, NULL, "kmodlab-canary");
	if (IS_ERR(b))
		goto out_free;
	kthread_bind(b, cpu_b);
	wake_up_process(b);
	/* A runs here, pinned for the run (the insmod task; restored afterwards). */
	set_cpus_allowed_ptr(current, cpumask_of(cpu_a));
	local = canary_run(false);
	global = canary_run(true);
	smp_store_release(&turn, 2);
	wait_for_completion(&b_done);
	set_cpus_allowed_ptr(current, cpu_possible_mask);
	pr_info("kmodlab-canary: local=%u kmap=%u of %u highmem=%u cpus=%d,%d\n",
		local, global, iterations, high, cpu_a, cpu_b);
out_free:
	for (i = 0; i < CANARY_PAGES; i++)
		if (pages[i])
			__free_page(pages[i]);
	return 0;
}

static void __exit canary_exit(void)
{
}

module_init(canary_init);
module_exit(canary_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodlab: can this machine show stale CPU-local highmem mappings?");
