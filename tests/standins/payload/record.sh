# LAB STAND-IN snippet: a stand-in package's maintainer scripts log each call dpkg makes,
# so a test can see what was installed, upgraded or removed, and in which order.
standin_record() {
    mkdir -p /var/lib/lab-standin
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) @PACKAGE@ @VERSION@ $*" >> /var/lib/lab-standin/maintainer-scripts.log
}
