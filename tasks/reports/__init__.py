"""Reports (统计报表): metrics, the statistics report and the what-if (拟调整时限测算)."""
