#!/usr/bin/env bash
# placeholder, replaced by the SSH work
exit 0
