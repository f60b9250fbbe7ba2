"""Asset check names, kept as constants so that sensors and tests refer to the same ones."""

NO_RESOURCE_OVER_CAPACITY = "no_resource_over_capacity"
NO_INELIGIBLE_PAIR = "no_ineligible_pair"
MUST_ALLOCATE_REQUESTS_SERVED = "must_allocate_requests_served"
UNALLOCATED_RATIO_NEAR_TRAILING_MONTHS = "unallocated_ratio_near_trailing_months"
UTILIZATION_NEAR_TRAILING_MONTHS = "utilization_near_trailing_months"
FINAL_ALLOCATION_MATCHES_APPROVED_VERSION = "final_allocation_matches_approved_version"
