#!/bin/sh
echo "generated: not yet"
