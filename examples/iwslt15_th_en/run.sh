#!/usr/bin/env bash
# IWSLT15 Thai→English, the paper's low-resource setup: teacher 2x500, students 2x100, 25k subwords per side.
#
#   examples/iwslt15_th_en/run.sh --corpus-dir th-en [--workdir DIR] [--gpus N] [--dry-run] [--preset paper|tiny]
#
# --corpus-dir: the unpacked WIT3 release (https://wit3.fbk.eu/2015-01, texts/th/en/th-en.tgz) with
# train.tags.th-en.{th,en} and IWSLT15.TED.{dev2010,tst2010,...,tst2013}.th-en.{th,en}.xml.
# valid = dev2010 + tst2010 + tst2011, test = tst2012 + tst2013. See examples/paper_recipe.sh for the rest.
CORPUS=iwslt15 SRC=th TGT=en VOCAB=25000 NAME=iwslt15_th_en
TEACHER_ARCH=luong_lstm_2x500 STUDENT_ARCH=luong_lstm_2x100
DOWNLOADS=()  # WIT3 asks you to download the release yourself
source "$(dirname "$0")/../paper_recipe.sh"
