"""Reading Prometheus, writing the Pushgateway, keeping fitted models: every byte that leaves or enters the process."""
