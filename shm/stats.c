/*
 * stats.c - names and buckets of the region's counters (stats.h).
 */
#include "ringmaster/stats.h"

const uint64_t rm_latency_bounds_us[RM_LATENCY_BUCKETS] = {
    500,    1000,   2500,    5000,    10000,   25000,    50000,    100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000,
};

const char *rm_restart_cause_name(unsigned cause)
{
    static const char *const names[RM_RESTART_CAUSES] = {
        [RM_RESTART_CRASH] = "crash",
        [RM_RESTART_TIMEOUT] = "timeout",
        [RM_RESTART_HEARTBEAT] = "heartbeat",
        [RM_RESTART_PROTOCOL] = "protocol",
        [RM_RESTART_MAX_REQUESTS] = "max_requests",
        [RM_RESTART_MAX_RSS] = "max_rss",
        [RM_RESTART_RELOAD] = "reload",
        [RM_RESTART_SCALE_DOWN] = "scale_down",
    };
    return cause < RM_RESTART_CAUSES ? names[cause] : "unknown";
}

const char *rm_overload_cause_name(unsigned cause)
{
    static const char *const names[RM_OVERLOAD_CAUSES] = {
        [RM_OVERLOAD_NO_MEMORY] = "no_memory",
        [RM_OVERLOAD_QUEUE_FULL] = "queue_full",
        [RM_OVERLOAD_QUEUE_TIMEOUT] = "queue_timeout",
        [RM_OVERLOAD_MAX_CONNECTIONS] = "max_connections",
    };
    return cause < RM_OVERLOAD_CAUSES ? names[cause] : "unknown";
}

void rm_stats_record_response(rm_supervisor_stats_t *stats, int status, uint64_t latency_us)
{
    if (status >= 100 && status <= 599)
        rm_stat_add(&stats->responses[status / 100 - 1], 1);
    rm_stat_add(&stats->latency[rm_latency_bucket(latency_us)], 1);
    rm_stat_add(&stats->latency_sum_us, latency_us);
}
