//! A container's /etc/resolv.conf, /etc/hosts and /etc/hostname, rendered purely.
