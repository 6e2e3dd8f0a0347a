"""Scheduling: groups of couriers run on cron schedules. A front end above the core: it calls
`Context.run` for each courier window and keeps its own records (group runs, leases, alerts)
through the state seam.

    cron      cron expressions -> Schedule (fire times in a zone)
    planning  pure: each member's window and partitions, catch-up, run order
    checks    config checks of groups (courier.validate runs them)
    leases    one holder per scope across processes
    runner    GroupRunner: one group run
    loop      Scheduler: `courier scheduler`, every group on its schedule
    status    `courier status`: last success, backlog and next run per courier
"""
