#include <pcap/pcap.h>

// Thin wrappers: the packet header struct holds a `struct timeval`, whose field types differ
// between platforms; these keep the Swift side free of them.
static inline long long authtap_pcap_ts_usec(const struct pcap_pkthdr *h) {
    return (long long)h->ts.tv_sec * 1000000LL + (long long)h->ts.tv_usec;
}
static inline unsigned int authtap_pcap_caplen(const struct pcap_pkthdr *h) { return h->caplen; }
static inline unsigned int authtap_pcap_len(const struct pcap_pkthdr *h) { return h->len; }
