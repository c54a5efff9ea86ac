#!/bin/sh
echo "reproduce: not yet"
