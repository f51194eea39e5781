#!/bin/busybox sh
# kmodlab guest init: mount the basics, load the drivers the image lists, bring up the
# slirp network, start dropbear with the pinned host key, then hand PID 1 to busybox init
# (which reaps orphans and powers off on request).
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/bin /usr/sbin /mnt
/bin/busybox --install -s /bin
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm
hostname kmodlab

t0=$(cut -d' ' -f1 /proc/uptime)
while read -r ko; do
	[ -n "$ko" ] || continue
	insmod "$ko" || echo "kmodlab: insmod $ko failed"
done < /etc/kmodlab/modules
echo "kmodlab: modules loaded ($t0 -> $(cut -d' ' -f1 /proc/uptime) s)"

ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2

# -s: no password logins; -E: log to the console; keys only from authorized_keys.
dropbear -r /etc/dropbear/dropbear_ed25519_host_key -p 22 -s -E
echo "KMODLAB-READY $(uname -r) up $(cut -d' ' -f1 /proc/uptime)"
exec /bin/busybox init
