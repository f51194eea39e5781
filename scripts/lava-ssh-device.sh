# Sourced by the LAVA e2e scripts: the device dictionary of an ssh device that is a
# kmodlab guest, as lava-server's ssh.jinja2 device type takes it.
# ssh_device_dict PORT KEY  prints it.
ssh_device_dict() {
	cat <<DICT
{% extends 'ssh.jinja2' %}
{% set ssh_host = '127.0.0.1' %}
{% set ssh_port = $1 %}
{% set ssh_user = 'root' %}
{% set ssh_identity_file = '$2' %}
{% set schroot = '' %}
{% block schroot %}{% endblock schroot %}
DICT
}
