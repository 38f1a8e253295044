import os
import sys

# --import-mode=importlib does not put test folders on sys.path; the shared fakes live here.
sys.path.insert(0, os.path.dirname(__file__))
