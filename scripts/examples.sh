#!/bin/sh
echo "examples: not yet"
