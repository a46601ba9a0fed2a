"""The SkyPilot task of `f5guard cloud` (``task``) and its YAML text (``yamltext``): the same config on cloud
GPUs as a managed job, home on a bucket. Neither imports SkyPilot: the task is plain data, checked by SkyPilot's
own loader in the tests (tests/test_cloud_task.py)."""
